"""Which graphs the main job promotes to staging and rolls out in dev (no imports: cheap to read)."""

STAGING_GRAPH = "digits"
"""The graph the main job also promotes to staging."""
CANARY_GRAPH = "digits"
"""The graph whose new versions the main job rolls out in dev (canary: good, broken; shadow)."""
