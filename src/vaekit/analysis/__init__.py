"""vaekit.analysis"""
