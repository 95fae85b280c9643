"""The discovery agent: the LangGraph loop of LEMONADE's Algorithm 1 and its parts.

``graph.build_graph`` assembles planner, architect, validate, code_fixer, evaluate and critic;
``session`` starts and resumes runs for the command line.
"""
