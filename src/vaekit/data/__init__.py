"""vaekit.data"""
