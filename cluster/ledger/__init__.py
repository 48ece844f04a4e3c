"""The campaign ledger: per-campaign totals from the committed outputs, as ``campaign.snapshot`` events."""
