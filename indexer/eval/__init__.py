"""Evaluation: score retrieval and answers on datasets, across config variants, and keep the runs.

datasets.py reads question sets (BEIR, JSONL, LlamaIndex labelled RAG); metrics.py holds the pure
metric functions; judge.py asks the LLM for graded verdicts; spec.py expands variants; indexes.py
finds or builds the index a variant runs against; runner.py evaluates; report.py writes a run to
disk (JSONL, summary, Markdown, chart); compare.py diffs two runs; generate.py drafts questions.
"""
