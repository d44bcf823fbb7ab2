"""Human review: predictions chosen for reviewers, and what their verdicts tell."""
