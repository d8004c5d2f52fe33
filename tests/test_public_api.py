import lamina
import lamina.layers


def test_all_is_sorted_and_importable() -> None:
    names = [n for n in lamina.__all__ if n != "__version__"]
    assert names == sorted(names)
    for name in lamina.__all__:
        assert hasattr(lamina, name), name


def test_core_names_are_exported() -> None:
    for name in [
        "Request",
        "Response",
        "Service",
        "Layer",
        "ServiceBuilder",
        "layer_fn",
        "service_fn",
        "HttpxTransport",
        "LaminaError",
        "TransportError",
        "TimeoutError",
        "HTTPStatusError",
        "ParseError",
        "ConfigError",
    ]:
        assert name in lamina.__all__


def test_layers_all_is_sorted() -> None:
    assert list(lamina.layers.__all__) == sorted(lamina.layers.__all__)
    for name in lamina.layers.__all__:
        assert hasattr(lamina.layers, name)
