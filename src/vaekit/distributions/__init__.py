"""vaekit.distributions"""
