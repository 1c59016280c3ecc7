"""Layer 4, what a user reads: the console report, Plotly figures, bands over seeds."""
