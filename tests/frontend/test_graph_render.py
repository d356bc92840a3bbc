"""`netcompiler graph CONFIG --format svg|png|html`: the network drawn by Graphviz's `dot`.

These tests need `dot` (Graphviz; `.ci/run` installs it) and fail, rather than skip, without it.
Expectations come from the validation result (layers, inferred shapes, `prev:` edges,
diagnostics), not from the renderer.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from netcompiler.cli import app as cli
from netcompiler.frontend.render import ORANGE, RED, build_drawing, render_dot
from netcompiler.frontend.validate import validate

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
SVG = "{http://www.w3.org/2000/svg}"
WEIRD = 'a"b<c>&d'  # a layer name that needs escaping in dot, SVG and HTML

NET = """\
extern_data:
  data: {dim: 9}
  classes: {dim: 5, sparse: true}
network:
  'a"b<c>&d': {class: linear, from: data, n_out: 8}
  enc: {class: linear, from: 'a"b<c>&d', n_out: 8, activation: tanh}
  sub:
    class: subnetwork
    from: enc
    subnetwork:
      h: {class: linear, from: data, n_out: 4}
      output: {class: copy, from: h}
  ctx: {class: reduce, from: sub, mode: max, axes: T}
  dec:
    class: rec
    from: []
    target: classes
    unit:
      emb: {class: linear, from: prev:output, n_out: 6}
      s: {class: linear, from: [emb, prev:s, base:ctx], n_out: 16}
      output: {class: softmax, from: s, n_out: 5, loss: ce, target: classes}
  output: {class: linear, from: dec, n_out: 3, is_output_layer: true}
"""
# a misspelt option (error), an unknown reference inside the unit (error), an unused layer
BROKEN = (
    NET.replace("activation: tanh", "activaton: tanh").replace(
        "      output: {class: softmax, from: s,",
        "      bad: {class: linear, from: nothing, n_out: 2}\n"
        "      output: {class: softmax, from: [s, bad],",
    )
    + "  unused: {class: linear, from: data, n_out: 3}\n"
)


@pytest.fixture(scope="module", autouse=True)
def need_dot():
    assert shutil.which("dot"), (
        "Graphviz's `dot` is not on PATH; these tests need it: apt-get install graphviz "
        "(.ci/run installs it)"
    )


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- reading the SVG -------------------------------------------------------------------------------
def _points(shape) -> list[tuple[float, float]]:
    """Outline points of a shape element (polygon, path, ellipse)."""
    tag = shape.tag[len(SVG) :]
    if tag == "ellipse":
        cx, cy, rx, ry = (float(shape.get(k)) for k in ("cx", "cy", "rx", "ry"))
        return [(cx - rx, cy - ry), (cx + rx, cy + ry)]
    nums = re.findall(r"-?\d+(?:\.\d+)?", shape.get("points" if tag == "polygon" else "d"))
    return [(float(x), float(y)) for x, y in zip(nums[::2], nums[1::2])]


def _outline(elem):
    """The element drawing a node's or cluster's outline (inside a node: under `<a>`)."""
    for e in elem.iter():
        if e.tag in (SVG + "polygon", SVG + "path", SVG + "ellipse") and e.get("stroke") not in (
            None,
            "transparent",
        ):
            return e
    raise AssertionError("no outline")


def parse_svg(text: str):
    root = ET.fromstring(text)
    nodes, clusters, edges = {}, {}, {}
    for g in root.iter(SVG + "g"):
        kind = g.get("class")
        if kind not in ("node", "cluster", "edge"):
            continue
        title = g.find(SVG + "title").text
        texts = [t.text for t in g.iter(SVG + "text")]
        outline = _outline(g)
        item = {"id": title, "texts": texts, "outline": outline, "box": _bbox(_points(outline))}
        if kind == "node":
            nodes[texts[0]] = item  # the first line is the name
        elif kind == "cluster":
            clusters[texts[0]] = item
        else:
            edges[title] = item
    by_id = {item["id"]: name for name, item in nodes.items()}
    edges = {(by_id[t.split("->")[0]], by_id[t.split("->")[1]]): item for t, item in edges.items()}
    return nodes, clusters, edges


def _bbox(points):
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def _inside(inner, outer) -> bool:
    return (
        inner[0] >= outer[0]
        and inner[1] >= outer[1]
        and inner[2] <= outer[2]
        and inner[3] <= outer[3]
    )


def render_svg(capsys, path) -> str:
    code, out, err = run(capsys, "graph", path, "--format", "svg")
    assert code == 0, err
    return out


# -- the SVG ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_svg_has_every_layer_with_class_and_shape(capsys, config):
    result = validate(str(config))
    nodes, _, _ = parse_svg(render_svg(capsys, str(config)))
    network = result.graph.network
    assert set(nodes) == set(result.graph.g.nodes)
    for name, layer in network.layers.items():
        texts = nodes[name]["texts"]
        assert texts[1] == layer.layer_class
        assert texts[2] == str(result.inferred.shapes[name])
    for key, shape in result.inferred.extern.items():
        assert nodes[f"data:{key}"]["texts"][1:3] == ["extern_data", str(shape)]


def test_svg_clusters_prev_edges_and_escaping(capsys, tmp_path):
    path = write(tmp_path, "net.yaml", NET)
    result = validate(path)
    assert result.ok, result.diagnostics
    nodes, clusters, edges = parse_svg(render_svg(capsys, path))
    # a name with quotes, `<` and `&` comes through dot and SVG unchanged
    assert nodes[WEIRD]["texts"] == [WEIRD, "linear", str(result.inferred.shapes[WEIRD])]
    # the rec unit and the subnetwork are clusters holding (geometrically) their layers
    assert set(clusters) == {"dec (rec unit)", "sub (subnetwork)"}
    network = result.graph.network
    for name, layer in network.layers.items():
        owner = (
            "dec"
            if layer.scope.rec_layer is not None
            else ("sub" if name.startswith("sub/") else None)
        )
        for title, cluster in clusters.items():
            inside = _inside(nodes[name]["box"], cluster["box"])
            assert inside == (title.split()[0] == owner), (name, title)
    # `prev:` edges are dashed, the others not; every graph edge but the unit's inner ones
    # (shown by the cluster) is drawn
    expected = {
        (u, v): d["prev"]
        for u, v, d in result.graph.g.edges(data=True)
        if d["option"] != "unit" or u == "dec/output"
    }
    assert set(edges) == set(expected)
    assert sorted(e for e, prev in expected.items() if prev) == [
        ("dec/output", "dec/emb"),
        ("dec/s", "dec/s"),
    ]
    for edge, prev in expected.items():
        line = edges[edge]["outline"]  # the edge's path (the arrow head comes after it)
        assert line.tag == SVG + "path"
        assert (line.get("stroke-dasharray") is not None) == prev, edge
    # nothing flagged: no red or orange
    for item in nodes.values():
        assert item["outline"].get("stroke") not in (RED, ORANGE)


def test_flagged_layers_are_red_and_still_drawn(capsys, tmp_path):
    path = write(tmp_path, "broken.yaml", BROKEN)
    result = validate(path)
    assert sorted(d.rule for d in result.errors) == ["graph.unknown-layer", "schema.unknown-option"]
    assert [d.rule for d in result.warnings] == ["graph.unused"]
    code, out, err = run(capsys, "graph", path, "--format", "svg")
    assert code == 0
    # the errors are reported (one line each) and the graph is drawn anyway
    assert len(err.strip().splitlines()) == 2 and "[schema.unknown-option]" in err
    nodes, _, _ = parse_svg(out)
    assert set(nodes) == set(result.graph.g.nodes)
    colour = {name: item["outline"].get("stroke") for name, item in nodes.items()}
    assert colour.pop("enc") == RED  # network.enc.activaton
    assert colour.pop("dec/bad") == RED  # network.dec.unit.bad.from
    assert colour.pop("unused") == ORANGE
    assert RED not in colour.values() and ORANGE not in colour.values()
    # where shape inference stopped, the shape is `?`; upstream shapes are still shown
    assert nodes["enc"]["texts"][2] == "?"
    assert nodes[WEIRD]["texts"][2] == str(result.inferred.shapes[WEIRD])


def test_dot_source_quotes_everything(tmp_path):
    # names and labels go into quoted strings / HTML labels: no raw `"` or `<` of a name
    result = validate(write(tmp_path, "net.yaml", NET))
    source = render_dot(build_drawing(result), 'title "with" quotes')
    assert 'label="title \\"with\\" quotes";' in source
    assert "<b>a&quot;b&lt;c&gt;&amp;d</b>" in source
    assert 'tooltip="a\\"b<c>&d"' in source
    assert WEIRD not in source.replace('tooltip="a\\"b<c>&d"', "")


# -- html, png, output -----------------------------------------------------------------------------
class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.rows, self._row, self._cell, self.tags = [], [], None, None, []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for key, value in attrs:
            if key in ("src", "href", "xlink:href", "data") or key.endswith(":href"):
                self.refs.append(value)
        if tag == "tr":
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append(self._cell.replace("\xa0", " ").strip())
            self._cell = None
        elif tag == "tr" and self._row:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def test_html_page_is_self_contained(capsys, tmp_path):
    path = write(tmp_path, "broken.yaml", BROKEN)
    result = validate(path)
    out_file = tmp_path / "page.html"
    code, out, err = run(capsys, "graph", path, "--format", "html", "-o", str(out_file))
    assert code == 0 and out == "" and f"wrote {out_file}" in err
    page = out_file.read_text()
    parser = _Page()
    parser.feed(page)
    assert parser.refs == []  # no links, images or scripts from elsewhere
    assert "<script" not in page and "<link" not in page and "@import" not in page
    # the only URLs are the SVG namespace names
    assert re.sub(r'xmlns(:\w+)?="http://www\.w3\.org/[^"]*"', "", page).count("http") == 0
    assert parser.tags.count("svg") == 1
    # the inline SVG is the one `--format svg` writes
    code, svg, _ = run(capsys, "graph", path, "--format", "svg")
    svg_nodes, _, _ = parse_svg(svg)
    start = page.index("<svg")
    page_nodes, _, _ = parse_svg(page[start : page.index("</svg>") + len("</svg>")])
    assert {n: i["texts"] for n, i in page_nodes.items()} == {
        n: i["texts"] for n, i in svg_nodes.items()
    }
    # one table row per layer and extern key: name, class, shape, from, params, diagnostics
    rows = {r[0]: r for r in parser.rows}
    network = result.graph.network
    assert set(rows) == set(result.graph.g.nodes)
    shapes = result.inferred.shapes
    for name, layer in network.layers.items():
        assert rows[name][1] == layer.layer_class
        assert rows[name][2] == (str(shapes[name]) if name in shapes else "?")
    assert rows["dec/s"][3] == "emb, prev:s, base:ctx"
    assert rows[WEIRD][4] == str(9 * 8 + 8)  # linear 9 -> 8 with bias
    assert "[schema.unknown-option]" in rows["enc"][5] and rows[WEIRD][5] == ""
    assert "[graph.unused]" in rows["unused"][5]
    assert rows[WEIRD][0] == WEIRD  # escaped in the page, the name again once parsed


def test_png_and_output_files(capsys, tmp_path):
    config = str(REPO / "configs" / "base_convert_attention.yaml")
    target = tmp_path / "g.png"
    code, out, err = run(capsys, "graph", config, "--format", "png", "-o", str(target))
    assert code == 0 and out == ""
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    # png needs -o; a missing output directory is a usage error; nothing half-written
    code, out, err = run(capsys, "graph", config, "--format", "png")
    assert code == 2 and out == "" and "--format png needs -o FILE.png" in err
    code, out, err = run(
        capsys, "graph", config, "--format", "svg", "-o", str(tmp_path / "nope" / "g.svg")
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "-o " in err
    assert not (tmp_path / "nope").exists()
    # svg to -o equals svg to stdout
    code, out, _ = run(capsys, "graph", config, "--format", "svg", "-o", str(tmp_path / "g.svg"))
    assert (tmp_path / "g.svg").read_text() == render_svg(capsys, config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png", "g.svg"]  # no temp files


def test_unreadable_config_draws_nothing(capsys, tmp_path):
    target = tmp_path / "g.svg"
    code, out, err = run(
        capsys,
        "graph",
        write(tmp_path, "bad.yaml", "network: [\n"),
        "--format",
        "svg",
        "-o",
        str(target),
    )
    assert code == 1 and "[load.syntax]" in err and not target.exists()


def test_dot_missing_says_how_to_install(capsys, tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    target = tmp_path / "g.svg"
    for fmt in ("svg", "png", "html"):
        code, out, err = run(capsys, "graph", str(CONFIGS[0]), "--format", fmt, "-o", str(target))
        assert code == 2 and out == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"netcompiler graph: error: --format {fmt}: Graphviz's `dot`")
        assert "apt-get install graphviz" in lines[0] and "brew install graphviz" in lines[0]
        assert not target.exists()
    # the text formats need no Graphviz
    assert run(capsys, "graph", str(CONFIGS[0]), "--format", "mermaid")[0] == 0


def test_dot_failing_is_one_line_and_writes_nothing(capsys, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dot"
    fake.write_text(
        "#!/bin/sh\ncat >/dev/null\necho 'Error: syntax error in line 3' >&2\n"
        "echo 'more' >&2\nexit 1\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ.get("PATH", ""))
    target = tmp_path / "g.svg"
    code, out, err = run(capsys, "graph", str(CONFIGS[0]), "--format", "svg", "-o", str(target))
    assert code == 2 and not target.exists()
    assert err.strip().splitlines() == [
        "netcompiler graph: error: --format svg: `dot -Tsvg` failed: Error: syntax error in line 3"
    ]
