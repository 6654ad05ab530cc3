"""The service: a SavedModel that translates raw sentences (`export`), the HTTP service with its
page (`serving`, ``playground/``) and the request batcher it uses (`dynamic_batching`). Imports
decoding, models, data and the shared basics.
"""
