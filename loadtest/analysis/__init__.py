"""Analysis of a run: matching outputs to inputs, summaries, reports, recounts. Pure."""
