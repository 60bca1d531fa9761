"""ha-registry-lab: build a highly available private Docker registry step by step."""
