"""Studies: ``make bench`` (`bench`, `shortlist_bench`, `serve_bench`, `scale_bench`), the seeds'
claims about RNNs (`experiments`, `claims` and the probes `gradient_flow`, `cell_activations`,
`continuation`) and the recipes' results table (`results`). May import anything but the CLI.
"""
