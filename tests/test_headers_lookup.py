"""Headers lookups: the length shortcut never changes which fields match."""

from lamina._headers import Headers


def test_headers_lookups_match_lowered_names_of_any_length() -> None:
    headers = Headers(
        [("A", "1"), ("ab", "2"), ("AB", "3"), ("aB", "4"), ("K", "5"), ("İ", "6"), ("\u212a", "7")]
    )
    assert headers.get("Ab") == "2, 3, 4"
    assert headers.get("a") == "1"
    assert headers.get("abc") is None
    assert headers.get("abc", "d") == "d"
    assert headers.get("k") == "5, 7"  # the Kelvin sign lowers to "k"
    assert headers.get("i\u0307") == "6"  # "İ" lowers to two characters
    assert headers.get_list("İ") == ["6"]
    assert "i\u0307" in headers
    assert "x" not in headers
