"""Operator commands: status/stop, parked customers, scaling, ACLs and the catalogue."""
