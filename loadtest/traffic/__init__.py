"""Traffic generation: campaign events, load shapes, simulated PSPs, pushing a campaign."""
