"""The plain-text alternative derived from the sanitised HTML body."""

from __future__ import annotations

import pytest

from emails.delivery.text import html_to_text


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>One</p><p>Two</p>", "One\n\nTwo"),
        ("Line one<br>Line two<br/>Line three", "Line one\nLine two\nLine three"),
        ("<div>A</div><div>B</div>", "A\nB"),
        ("<h1>Title</h1>Body", "Title\n\nBody"),
        ("<p>  lots   of\n\n  space  </p>", "lots of space"),
    ],
)
def test_blocks_and_line_breaks_become_newlines(html, text):
    assert html_to_text(html) == text


def test_links_show_their_address_after_the_text():
    html = '<p>Read <a href="https://www.gov.sg/faq">the FAQ</a> now</p>'

    assert html_to_text(html) == "Read the FAQ (https://www.gov.sg/faq) now"


def test_a_link_whose_text_is_its_address_is_not_repeated():
    html = '<a href="https://go.gov.sg">https://go.gov.sg</a> or <a href="mailto:a@b.sg">a@b.sg</a>'

    assert html_to_text(html) == "https://go.gov.sg or a@b.sg"


def test_entities_are_decoded():
    assert (
        html_to_text("<p>Tom &amp; Jerry &lt;3 &#8364;5&nbsp;off</p>") == "Tom & Jerry <3 €5\xa0off"
    )


def test_script_and_style_content_is_dropped():
    html = "<style>p{color:red}</style><p>Hello</p><script>alert(1)</script>"

    assert html_to_text(html) == "Hello"


def test_lists_get_bullets_and_numbers():
    html = "<ul><li>Apples</li><li>Pears</li></ul><ol start='3'><li>Three</li><li>Four</li></ol>"

    assert html_to_text(html) == "- Apples\n- Pears\n3. Three\n4. Four"


def test_table_rows_are_lines_and_cells_are_separated():
    html = "<table><tr><th>Name</th><th>Slot</th></tr><tr><td>Ali</td><td>9am</td></tr></table>"

    assert html_to_text(html) == "Name Slot\nAli 9am"


def test_images_show_their_alt_text_and_inline_references_are_not_links():
    html = '<p><a href="cid:0"><img src="cid:0" alt="Logo"></a> Welcome</p>'

    assert html_to_text(html) == "Logo Welcome"


def test_preformatted_text_keeps_its_lines():
    assert html_to_text("<pre>a\n  b</pre>") == "a\n  b"


def test_breaks_in_a_row_leave_at_most_one_blank_line():
    assert html_to_text("<p>a</p><br><br><br><p>b</p>") == "a\n\nb"
    assert html_to_text("a<br><br>b") == "a\n\nb"


def test_control_characters_in_the_body_are_not_taken_for_line_breaks():
    assert html_to_text("a\x00b\x02c") == "abc"


def test_plain_text_bodies_pass_through():
    assert html_to_text("Your OTP is 123456") == "Your OTP is 123456"
