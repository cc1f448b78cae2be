"""Differential privacy building blocks shared by FedAvg and MPC jobs: noise samplers (pure) and accounting."""
