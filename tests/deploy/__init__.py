"""Deployment tests: docker-compose.yml and the Dockerfile, validated and run for real."""
