"""vaekit.inference"""
