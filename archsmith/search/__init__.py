"""The objective-aware search shared by the bench's ``rulebook`` strategy and the offline architect.

The rulebook proposes moves and explains them (every candidate names the instruction and the rules
behind it); this package decides which candidate to try next by the objective itself, with a cheap
surrogate fitted on what has been evaluated. ``moves`` maps instructions onto a tabular space from
its capacity order, ``surrogate`` is the Bayesian linear model, ``policy`` the choice both callers
share. The search on a table that uses them is the bench's (``archsmith.bench.guided``).
"""
