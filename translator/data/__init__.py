"""The data side: corpus recipes (`recipes`), reading their files (`reading`), writing the
prepared splits (`preparing`), reading them back (`prepared`; `corpora` gives all four under one
roof), the user's own files (`own_data`), SentencePiece tokenizers (`tokenizers`) and training
batches (`batching`). Imports only the shared basics of `translator`.
"""
