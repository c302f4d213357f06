"""vaekit.nn"""
