"""The planner: a request in plain words -> a validated TaskSpec and the assumptions behind it.

Two front ends share one back end (`front`). ``plan_offline`` reads the request with
deterministic rules (`phrases`: no LLM, same request -> same spec); ``plan_with_llm`` asks a chat
model for the request's intent as structured output. Both produce a ``PlanIntent`` (`intent`)
that `build` turns into a TaskSpec the same way: the dataset is resolved through the registry, or,
for the user's own data (``--dataset PATH`` or a path in the request, "the cell images in
./cells"), prepared and read (`choice`), so shapes and classes never come from guesswork; emphasis
sets the combined-metric weights as in the paper's three settings, and every default taken is
written down, because a search that runs overnight on a silent misreading wastes the night. What
cannot be honoured (no known dataset, contradictory constraints, a value outside the spec's range)
is refused with a message that says what to change.

The package sits in ``agents/`` because its results are the graph's contracts
(`archsmith.agents.interfaces.PlanResult`, ``PlanRefusedError``) and its callers are the planner
node and the CLI.
"""
