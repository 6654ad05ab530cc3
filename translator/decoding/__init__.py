"""Decoding: greedy and beam search (`search`), vocabulary shortlists (`shortlists`), ensembles
(`ensembles`), `Translator` (`translator`) and BLEU/chrF reports (`evaluation`). Imports models,
data and the shared basics.
"""
