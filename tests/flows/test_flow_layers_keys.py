"""A flow's layer options are named by strings: anything else is a ConfigError."""

from __future__ import annotations

import pytest
import yaml

from lamina import ConfigError
from lamina.flows import config_from_dict

FLOW = """
endpoints:
  - {name: a, url: "http://127.0.0.1:9/a"}
layers:
  - name: retry
    options:
      on: 3
"""


def test_an_unquoted_yaml_on_key_is_a_config_error_with_a_hint() -> None:
    data = yaml.safe_load(FLOW)
    assert True in data["layers"][0]["options"]  # YAML 1.1 reads `on` as true
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data)
    assert caught.value.field == "layers[0].options"
    assert "quote it" in str(caught.value)


@pytest.mark.parametrize("key", [3, None, 1.5, ("a",)])
def test_any_non_string_option_name_is_a_config_error(key: object) -> None:
    data = {
        "endpoints": [{"name": "a", "url": "http://127.0.0.1:9/a"}],
        "layers": [{"name": "retry", "options": {key: 1}}],
    }
    with pytest.raises(ConfigError, match="option names must be strings"):
        config_from_dict(data)
