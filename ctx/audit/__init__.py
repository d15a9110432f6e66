"""The maturity-model audit: levels of checks decided from config, traces, metrics and live probes."""
