"""vaekit.training"""
