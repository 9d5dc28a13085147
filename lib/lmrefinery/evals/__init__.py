"""``lmrefinery eval``: perplexity of any HF causal LM on text or token splits
(``perplexity.py``) and generation scores on instruction splits (``generation.py``)."""
