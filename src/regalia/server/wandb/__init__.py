"""The W&B client's protocol, answered over Regalia's service (issue 14)."""
