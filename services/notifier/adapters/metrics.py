"""Per-channel delivery metrics: sent, failed, retried, fell over, dead, provider latency."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class DeliveryMetrics:
    """Counters and a latency histogram, labelled by channel (slack, sms, whatsapp, push)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(
                f"notifier_deliveries_{name}", doc, ["channel", *labels], registry=registry
            )

        self.sent = counter("sent", "Messages the provider accepted")
        self.failed = counter("failed", "Failed send attempts (transient or permanent)", "kind")
        self.retried = counter("retried", "Sends rescheduled after a transient failure")
        self.fell_over = counter("fell_over", "Sends moved on to the next channel")
        self.dead = counter("dead", "Sends that failed on every channel (dead-lettered)")
        self.latency = Histogram(
            "notifier_provider_latency_seconds",
            "Provider API call duration",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
