"""The report's stylesheet, inlined in the page: readable on a laptop screen, and printed to PDF on A4 / Letter
without charts or tables cut across pages."""

from __future__ import annotations

__all__ = ["CSS"]

CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --good: #1a7f37; --warn: #9a6700; --bad: #cf222e;
        --good-bg: #dafbe1; --warn-bg: #fff8c5; --bad-bg: #ffebe9; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff;
       font: 14px/1.45 -apple-system, "Segoe UI", "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 16px 20px 40px; }
h1 { font-size: 1.45rem; margin: 0 0 8px; }
h2 { font-size: 1.25rem; margin: 22px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
h3 { font-size: 1.02rem; margin: 16px 0 6px; }
nav { display: flex; flex-wrap: wrap; gap: 10px; margin: 4px 0 10px; font-size: 0.92rem; }
nav a { color: #0969da; }
.first-screen { display: grid; grid-template-columns: 1.15fr 1fr; gap: 12px; }
.first-screen > .card:last-child { grid-column: 1 / -1; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; background: #fff; }
.card h3 { margin-top: 0; }
.card ul { margin: 6px 0 0; padding-left: 18px; }
.verdict .headline { font-size: 1.3rem; font-weight: 650; margin: 2px 0; }
.verdict .interval { color: var(--muted); margin: 0 0 4px; }
.verdict.good { border-left: 6px solid var(--good); }
.verdict.warn { border-left: 6px solid var(--warn); }
.verdict.bad { border-left: 6px solid var(--bad); }
.plan-line { margin: 8px 0 0; padding-top: 6px; border-top: 1px dashed var(--line); font-weight: 550; }
.validity.good { border-left: 6px solid var(--good); }
.validity.warn { border-left: 6px solid var(--warn); }
.validity.bad { border-left: 6px solid var(--bad); }
.validity li.doubt { color: var(--bad); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0; font-size: 0.92rem; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
.badge { font-size: 0.8rem; font-weight: 600; padding: 1px 8px; border-radius: 10px; vertical-align: middle; }
.badge.good { background: var(--good-bg); color: var(--good); }
.badge.bad { background: var(--bad-bg); color: var(--bad); }
.banner { padding: 8px 12px; border-radius: 6px; }
.banner.bad { background: var(--bad-bg); }
.note { color: var(--muted); font-size: 0.9rem; }
.warn-note { color: var(--warn); font-weight: 600; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.86rem; margin: 4px 0 10px; }
th, td { border-bottom: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.errors td:last-child, table.samples td { white-space: pre-wrap; overflow-wrap: anywhere; max-width: 640px; }
.better { color: var(--good); font-weight: 600; }
.worse { color: var(--bad); font-weight: 600; }
figure.chart { margin: 10px 0 16px; }
figure.chart figcaption { font-size: 0.88rem; color: var(--muted); margin-bottom: 4px; }
figure.chart figcaption strong { color: var(--fg); }
figure.chart svg { width: 100%; height: auto; display: block; }
pre.sample { white-space: pre-wrap; overflow-wrap: anywhere; background: #f6f8fa; border-radius: 6px; padding: 6px 8px;
             margin: 2px 0; max-height: 16em; overflow-y: auto; font-size: 0.82rem; }
.sample-card { border: 1px solid var(--line); border-radius: 6px; padding: 6px 10px; margin: 8px 0;
               break-inside: avoid; }
.sample-card p { margin: 2px 0; }
footer { margin-top: 28px; color: var(--muted); font-size: 0.85rem; border-top: 1px solid var(--line);
         padding-top: 8px; }
@media (max-width: 820px) { .first-screen { grid-template-columns: 1fr; } }
@media print {
  body { font-size: 11px; }
  main { max-width: none; padding: 0; }
  nav { display: none; }
  .first-screen { grid-template-columns: 1fr 1fr; }
  figure.chart, table, .card { break-inside: avoid; }
  h2, h3 { break-after: avoid; }
  article.run + article.run { break-before: page; }
  .scroll { overflow: visible; }
  table { font-size: 0.8em; width: 100%; }
  th, td { padding: 2px 4px; }
  td.num { white-space: normal; }
  pre.sample { max-height: none; }
}
"""
