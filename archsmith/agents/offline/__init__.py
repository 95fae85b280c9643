"""The offline architect: applies the rulebook's instructions to an architecture description.

Without an LLM the search still has to be real, so this architect keeps a small, explicit
description of the model (``description``), turns each of the rulebook's 15 instructions into a
concrete, bounded edit of it (``edits``), and renders readable PyTorch code that follows the
candidate-code contract (``render``, from Jinja templates beside the prompts). Which edit to make
is the shared search's choice on a surrogate of the history (``scoring``, ``architect``).
Everything is seeded, so a run is reproducible: the same seed and the same feedback give the same
sequence of candidates.
"""
