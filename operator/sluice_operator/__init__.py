"""Sluice operator: reconciles DataPipeline resources into worker Deployments."""
