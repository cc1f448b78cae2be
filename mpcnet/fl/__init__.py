"""Federated learning over secure aggregation (issue 6): data, numpy models, the FedAvg loop."""
