"""remix"""
