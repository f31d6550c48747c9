/* report_html.h — the page of `tau2_hpc report`: one self-contained HTML
 * file (inline CSS, inline JavaScript that draws the charts as SVG, the
 * run's data embedded as JSON). No network access is needed to view it. */
#ifndef TAU2_APP_REPORT_HTML_H
#define TAU2_APP_REPORT_HTML_H

#include <cJSON.h>

#include "core/sbuf.h"

/* Append the whole page to out. title names the run (escaped here);
 * data is the object the page script reads:
 *   {"run": {"name", "dir", "generated", "tool"}, "config": {...}|null,
 *    "metrics": [rows of metrics.jsonl],
 *    "eval": [{"tag", "step", "dataset", "summary", "n_episodes", "episodes": [...]}]} */
void report_html_write(SBuf *out, const char *title, const cJSON *data);

/* Append v as JSON that is safe inside a <script> element: "</" is written
 * "<\/" and "<!--" as "\u003c!--", so no string can end the element or
 * open an HTML comment; non-finite numbers become null. */
void report_json_embed(SBuf *out, const cJSON *v);

#endif
