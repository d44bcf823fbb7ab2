"""Scaled out: the changelog topic and spread models."""
