"""The tutorial's phases, in its order; each is an explanation, a plan and checks."""
