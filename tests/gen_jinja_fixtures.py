#!/usr/bin/env python3
"""Write tests/fixtures/jinja/cases.jsonl: chat-template rendering cases for the C Jinja interpreter.

The first line is {"contexts": {key: context}, "templates": {key: source}}, the contexts and the long
templates that many rows share; each further row is {"name", "template", "context", "output"} or
{..., "error": true}, where "context" is the key of a shared context and "template" is the source itself or,
as {"ref": key}, a shared one. Outputs are rendered by Python jinja2
in the environment transformers' apply_chat_template uses (ImmutableSandboxedEnvironment with
trim_blocks, lstrip_blocks, loopcontrols, the generation block, tojson/raise_exception/strftime_now,
dict, namespace). When transformers is importable, its own compiled environment is used, and the
real-template cases are also rendered through transformers.utils.chat_template_utils.render_jinja_template
to check that the stored context reproduces apply_chat_template byte for byte.

Run: python3 tests/gen_jinja_fixtures.py   (or with a venv python that has transformers)
"""
import itertools
import json
import os
import sys

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "fixtures", "jinja")
QWEN3_CONFIG = os.path.join(HERE, "..", "..", "shared", "qwen3-tokenizer", "tokenizer_config.json")

try:
    from transformers.utils import chat_template_utils as ctu

    HAVE_TRANSFORMERS = True
except Exception:  # transformers missing or broken: replicate its environment
    HAVE_TRANSFORMERS = False


def make_env():
    from jinja2.ext import Extension

    class Generation(Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_gen"), [], [], body).set_lineno(lineno)

        def _gen(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        from datetime import datetime

        return datetime.now().strftime(format)

    class TemplateDict:
        def __call__(self, *args, **kwargs):
            return dict(*args, **kwargs)

    class TemplateNamespace(jinja2.utils.Namespace):
        def __init__(*args, **kwargs):
            self, args = args[0], args[1:]
            attrs = dict(*args, **kwargs)
            for name in attrs:
                if isinstance(name, str) and name.startswith("_"):
                    raise jinja2.exceptions.SecurityError("underscore attribute")
            jinja2.utils.Namespace.__init__(self, attrs)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    env.globals["dict"] = TemplateDict()
    env.globals["namespace"] = TemplateNamespace
    return env


ENV = None if HAVE_TRANSFORMERS else make_env()


def compile_template(src):
    if HAVE_TRANSFORMERS:
        return ctu._compile_jinja_template(src)
    return ENV.from_string(src)


CASES = []
NAMES = set()


def add(name, template, context=None, expect_error=None):
    """Render and record; expect_error None means whatever Python does."""
    context = context or {}
    assert name not in NAMES, name
    NAMES.add(name)
    row = {"name": name, "template": template, "context": context}
    try:
        out = compile_template(template).render(**context)
        row["output"] = out
    except Exception as e:  # any template error: the C side must fail too, without crashing
        row["error"] = True
        row["python_error"] = f"{type(e).__name__}: {e}"[:200]
    if expect_error is not None:
        assert ("error" in row) == expect_error, (name, row)
    if " at 0x" in row.get("output", ""):  # object addresses differ run to run
        return row
    CASES.append(row)
    return row
LLAMA31 = '{{- bos_token }}\n' + '{%- if custom_tools is defined %}\n    {%- set tools = custom_tools %}\n{%- endif %}\n{%- if not tools_in_user_message is defined %}\n    {%- set tools_in_user_message = true %}\n{%- endif %}\n{%- if not date_string is defined %}\n    {%- if strftime_now is defined %}\n        {%- set date_string = strftime_now("%d %b %Y") %}\n    {%- else %}\n        {%- set date_string = "26 Jul 2024" %}\n    {%- endif %}\n{%- endif %}\n{%- if not tools is defined %}\n    {%- set tools = none %}\n{%- endif %}\n\n{#- This block extracts the system message, so we can slot it into the right place. #}\n{%- if messages[0][\'role\'] == \'system\' %}\n    {%- set system_message = messages[0][\'content\']|trim %}\n    {%- set messages = messages[1:] %}\n{%- else %}\n    {%- set system_message = "" %}\n{%- endif %}\n\n{#- System message #}\n{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}\n{%- if tools is not none %}\n    {{- "Environment: ipython\\n" }}\n{%- endif %}\n{{- "Cutting Knowledge Date: December 2023\\n" }}\n{{- "Today Date: " + date_string + "\\n\\n" }}\n{%- if tools is not none and not tools_in_user_message %}\n    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}\n    {{- \'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.\' }}\n    {{- "Do not use variables.\\n\\n" }}\n    {%- for t in tools %}\n        {{- t | tojson(indent=4) }}\n        {{- "\\n\\n" }}\n    {%- endfor %}\n{%- endif %}\n{{- system_message }}\n{{- "<|eot_id|>" }}\n\n{#- Custom tools are passed in a user message with some extra guidance #}\n{%- if tools_in_user_message and not tools is none %}\n    {#- Extract the first user message so we can plug it in here #}\n    {%- if messages | length != 0 %}\n        {%- set first_user_message = messages[0][\'content\']|trim %}\n        {%- set messages = messages[1:] %}\n    {%- else %}\n        {{- raise_exception("Cannot put tools in the first user message when there\'s no first user message!") }}\n{%- endif %}\n    {{- \'<|start_header_id|>user<|end_header_id|>\\n\\n\' -}}\n    {{- "Given the following functions, please respond with a JSON for a function call " }}\n    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}\n    {{- \'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.\' }}\n    {{- "Do not use variables.\\n\\n" }}\n    {%- for t in tools %}\n        {{- t | tojson(indent=4) }}\n        {{- "\\n\\n" }}\n    {%- endfor %}\n    {{- first_user_message + "<|eot_id|>"}}\n{%- endif %}\n\n{%- for message in messages %}\n    {%- if not (message.role == \'ipython\' or message.role == \'tool\' or \'tool_calls\' in message) %}\n        {{- \'<|start_header_id|>\' + message[\'role\'] + \'<|end_header_id|>\\n\\n\'+ message[\'content\'] + \'<|eot_id|>\' }}\n    {%- elif \'tool_calls\' in message %}\n        {%- if not message.tool_calls|length == 1 %}\n            {{- raise_exception("This model only supports single tool-calls at once!") }}\n        {%- endif %}\n        {%- set tool_call = message.tool_calls[0].function %}\n        {{- \'<|start_header_id|>assistant<|end_header_id|>\\n\\n\' -}}\n        {{- \'{"name": "\' + tool_call.name + \'", \' }}\n        {{- \'"parameters": \' }}\n        {{- tool_call.arguments | tojson }}\n        {{- "}" }}\n        {{- "<|eot_id|>" }}\n    {%- elif message.role == "tool" or message.role == "ipython" %}\n        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}\n        {%- if message.content is mapping or message.content is iterable %}\n            {{- message.content | tojson }}\n        {%- else %}\n            {{- message.content }}\n        {%- endif %}\n        {{- "<|eot_id|>" }}\n    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- \'<|start_header_id|>assistant<|end_header_id|>\\n\\n\' }}\n{%- endif %}\n'

QWEN25 = r'''{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
'''

MISTRAL = r'''{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
            {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\n\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}
            {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
        {%- endif %}
        {{- '"call_id": "' + message.tool_call_id + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
'''


# ---------------------------------------------------------------- small cases, by feature

CTX = {
    "s": "Hello, World", "u": "héllo wörld 東京 🚀", "e": "", "n": 7, "neg": -3, "f": 2.5, "z": 0,
    "t": True, "fa": False, "nn": None, "big": 12345678901,
    "l": [3, 1, 2], "ls": ["b", "A", "c", "a"], "lm": [1, "a", None, True, 2.5, [1, "x"], {"k": "v"}],
    "d": {"b": 1, "a": 2, "items": "x", "nested": {"k": [1, 2, {"z": "deep"}]}},
    "fl": [1.0, 0.1, 1e-05, 1e16, 123456789.123, -0.0, 3.0, 1.5e300, 0.0001],
    "ws": "  \t pad me \n ", "txt": "line1\nline2\n\nline4", "q": "it's \"quoted\" \\ back",
    "msgs": [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]},
        {"role": "tool", "content": "{\"ok\": true}"},
        {"role": "user", "content": "<tool_response>x</tool_response>"},
    ],
    "people": [{"name": "bo", "age": 30}, {"name": "Al", "age": 25}, {"name": "cy", "age": 30, "x": None}],
    "uni": "naïve café — ß ﬁ İ",
    "ctrl": "a\x01b\x7fc\u200bd\u2028e",
}

EXPRS = [
    # literals
    "1", "-1", "1.5", "1e3", "1_000", "0x1F", "0o17", "0b101", "'str'", '"dq"', "'a' 'b'", "'esc\\n\\t\\\\'", "'\\u00e9\\x41'",
    "True", "False", "None", "true", "none", "[1, 'a', None]", "(1,)", "(1, 2)", "()", "{'a': 1, 'b': [2]}", "{}", "[]",
    "1.0", "0.1", "1e-5", "1e16", "1e22", "100.0", "2.5e-7", "-0.0", "3.14159265358979",
    # arithmetic
    "1 + 2", "7 - 10", "3 * 4", "7 / 2", "6 / 3", "7 // 2", "-7 // 2", "7 % 3", "-7 % 3", "7 % -3", "2 ** 10", "2 ** -1",
    "2 ** 3 ** 2", "-2 ** 2", "7.5 // 2", "-7.5 // 2", "7.5 % 2", "-7.5 % 2", "1 + 2.0", "0.1 + 0.2", "1 / 3", "2.5 * 2",
    "'ab' + 'cd'", "'ab' * 3", "3 * 'x'", "[1] + [2, 3]", "[0] * 3", "(1,) + (2,)", "1 ~ 2", "'a' ~ none ~ true ~ 1.0",
    "True + 1", "n * f", "n / z", "n // z", "n % z", "'a' + 1", "'a' - 'b'", "nn + 1", "undefined_x + 1", "'x' * -1",
    "big * 1000", "-n", "+n", "-f", "not n", "not z", "not undefined_x", "- 't'",
    # comparison / logic
    "1 < 2", "1 < 2 < 3", "3 > 2 > 2", "1 == 1.0", "1 == True", "0 == False", "'a' == 'a'", "'a' != 'b'", "[1, 2] == [1, 2]",
    "[1] == (1,)", "{'a': 1} == {'a': 1}", "none == none", "'a' < 'b'", "'B' < 'a'", "[1, 2] < [1, 3]", "1 <= 1", "2 >= 3",
    "'a' < 1", "none < 1", "1 in l", "4 in l", "'ell' in s", "'x' not in s", "'a' in d", "'zz' in d", "1 in 'abc'",
    "n and s", "z and s", "z or s", "e or 'default'", "n or undefined_x", "undefined_x or 'dflt'", "nn or fa or z",
    "'yes' if t else 'no'", "'yes' if fa else 'no'", "'yes' if fa", "1 if 0 else 2 if 0 else 3", "not t and fa or n",
    # access
    "d.a", "d['a']", "d.items", "d['items']", "d.nested.k[2].z", "d.nested.k.2.z", "d.missing", "d['missing']", "d.get('a')",
    "d.get('zz')", "d.get('zz', 5)", "l[0]", "l[-1]", "l[5]", "l.0", "s[0]", "s[-1]", "u[1]", "u[-1]", "u[1:4]", "s[::-1]",
    "u[::-1]", "l[::-1]", "l[1:]", "l[:1]", "l[::2]", "s[2:8:2]", "s[100:]", "s[-3:]", "l[-100:100]", "s[::0]",
    "msgs[1].content", "msgs[-1]['role']", "msgs[2].tool_calls[0].function.arguments", "nn.x", "undefined_x.y", "undefined_x[0]",
    "d.nested.missing.deeper", "msgs[9].role", "ls[1:3]", "(l|list)[0]", "lm[5][1]", "'abc'[1]", "s.x", "d._private",
    # str() printing
    "lm", "d", "fl", "q", "[q]", "['it\\'s']", "[\"say \\\"hi\\\"\"]", "['a\\nb']", "[ctrl]", "ctrl", "[uni]", "nn", "t", "(1, 'a')",
    "d.nested", "[none, true, 1.5]", "big", "{'a': (1, 2)}", "[[]]", "{1: 'int key', 'x': 2.0}",
    # string methods
    "s.lower()", "s.upper()", "u.upper()", "uni.upper()", "uni.lower()", "'hello world'.title()", "'hELLO wORLD'.capitalize()",
    "\"they're bill's\".title()", "ws.strip()", "ws.lstrip()", "ws.rstrip()", "'xxhixx'.strip('x')", "'abcba'.strip('ab')",
    "'\\n\\nhi\\n'.lstrip('\\n')", "s.split(', ')", "'a b  c '.split()", "'a b  c '.split(None, 1)", "'a,b,c'.split(',', 1)",
    "'a,b,c'.rsplit(',', 1)", "' a b c '.rsplit(None, 1)", "'</think>x'.split('</think>')", "'a</think>b</think>c'.split('</think>')[-1]",
    "s.replace('l', 'L')", "s.replace('l', 'L', 1)", "'abc'.replace('', '-')", "s.startswith('Hell')", "s.startswith(('x', 'H'))",
    "s.endswith('ld')", "s.find('o')", "u.find('w')", "s.find('zz')", "s.rfind('o')", "s.count('l')", "'-'.join(['a', 'b'])",
    "', '.join(ls)", "'123'.isdigit()", "'12a'.isdigit()", "'abc'.isalpha()", "'  '.isspace()", "'abc'.islower()", "'ABC'.isupper()",
    "'{} and {}'.format(1, 'b')", "'{0}{name}'.format('x', name='y')", "'abc'.center(9)", "'abc'.center(8, '*')", "txt.splitlines()",
    "'abcdef'.removeprefix('ab')", "'x'.join('abc')", "s.index('W')", "'-'.join([1, 2])", "s.split('')", "'ab'.ljust(5) ~ '|'",
    # dict / list methods
    "d.items()", "d.keys()", "d.values()", "d.items() | list", "l.index(2)", "l.count(3)", "l.append(4)", "d.update({})",
    "l.copy()", "d.pop('a')",
    # filters
    "s|length", "u|length", "l|length", "d|length", "undefined_x|length", "n|length", "l|count", "s|lower", "s|upper",
    "'hello wOrld-foo (bar'|title", "'hELLO'|capitalize", "ws|trim", "'xxaxx'|trim('x')", "l|first", "l|last", "s|first",
    "[]|first", "l|join", "l|join(', ')", "people|join(', ', attribute='name')", "undefined_x|default('dv')",
    "nn|default('dv')", "e|default('dv', true)", "e|d('dv', boolean=true)", "z|default(5)", "l|list", "s|list", "d|list",
    "d|items|list", "nn|items|list", "n|string", "lm|string", "s|safe", "'42'|int", "' 42 '|int", "'4_2'|int", "'4.7'|int",
    "'x'|int", "'x'|int(-1)", "3.9|int", "'0x1A'|int(0, 16)", "'3.5'|float", "'x'|float", "n|float", "-3|abs", "-2.5|abs",
    "s|replace('o', '0')", "s|replace('o', '0', 1)", "txt|indent", "txt|indent(2, true)", "txt|indent(2, first=true, blank=true)",
    "txt|indent('> ')", "l|unique|list", "['a', 'A', 'b']|unique|list", "['a', 'A', 'b']|unique(case_sensitive=true)|list",
    "l|reverse|list", "s|reverse", "l|sort", "l|sort(reverse=true)", "ls|sort", "ls|sort(case_sensitive=true)",
    "people|sort(attribute='age')|map(attribute='name')|list", "people|sort(attribute='age,name')|list",
    "people|map(attribute='name')|list", "people|map(attribute='x', default='-')|list", "ls|map('upper')|list",
    "l|map('string')|join('|')", "people|selectattr('age', 'equalto', 30)|map(attribute='name')|list",
    "people|rejectattr('age', 'eq', 30)|list", "people|selectattr('x', 'defined')|list", "people|selectattr('x', 'none')|list",
    "msgs|selectattr('role', 'equalto', 'user')|list|length", "l|select('odd')|list", "l|reject('odd')|list",
    "lm|select|list", "lm|select('string')|list", "l|select('gt', 1)|list", "[1, 2, 3, 4]|select('divisibleby', 2)|list",
    "d|dictsort", "d|dictsort(reverse=true)", "{'b': 2, 'a': 3}|dictsort(by='value')", "-2.567|round", "2.567|round(2)",
    "2.5|round", "3.5|round", "2.567|round(1, 'floor')", "2.561|round(1, 'ceil')", "7|round", "'one two  three'|wordcount",
    "'abc'|center(9)", "[1, 2, 3, 4, 5]|batch(2)|list", "[1, 2, 3]|batch(2, 'x')|list", "l|sum", "people|sum(attribute='age')",
    "l|min", "l|max", "ls|min", "people|max(attribute='age')", "msgs|length", "s|e", "'<a>'|escape", "l|select('odd')|length",
    "l|select('odd')", "l|tojson", "(l|select('odd'))[0]",
    # tojson
    "d|tojson", "lm|tojson", "fl|tojson", "u|tojson", "q|tojson", "ctrl|tojson", "uni|tojson", "d|tojson(indent=2)",
    "d|tojson(indent=4)", "d|tojson(sort_keys=true)", "d|tojson(separators=(',', ':'))", "u|tojson(ensure_ascii=true)",
    "[]|tojson(indent=2)", "{}|tojson(indent=2)", "nn|tojson", "t|tojson", "undefined_x|tojson", "(1, 2)|tojson",
    "{1: 'a', 2.5: 'b', none: 'c', true: 'd'}|tojson", "big|tojson", "-0.0|tojson", "d|tojson(indent='\\t')",
    "msgs[2]|tojson", "l|select('odd')|tojson",
    # tests
    "n is defined", "undefined_x is defined", "undefined_x is undefined", "nn is none", "z is none", "s is string", "n is string",
    "n is number", "f is number", "t is number", "n is integer", "f is integer", "t is integer", "f is float", "t is boolean",
    "n is boolean", "t is true", "1 is true", "fa is false", "z is false", "d is mapping", "l is mapping", "l is sequence",
    "s is sequence", "d is sequence", "n is sequence", "l is iterable", "s is iterable", "n is iterable", "d.get is callable",
    "s is callable", "n is odd", "n is even", "6 is divisibleby 3", "n is divisibleby(3)", "n is eq 7", "n is equalto 7",
    "n is ne 7", "n is lt 8", "n is gt 8", "n is le 7", "n is ge 8", "1 is in l", "4 is in l", "nn is sameas none",
    "t is sameas true", "n is not none", "nn is not none", "not nn is none", "s is lower", "'abc' is lower", "'ABC' is upper",
    "undefined_x is none", "undefined_x is string", "msgs[0].content is string", "msgs[2].tool_calls is defined",
    "msgs[1].tool_calls is defined", "'x' is filter", "'odd' is test", "'nope' is filter",
    # globals
    "range(5)|list", "range(2, 8, 3)|list", "range(5, 0, -2)|list", "range(0)|list", "range(3)|length", "range(200000)|length",
    "dict(a=1, b='x')", "dict({'a': 1}, b=2)", "namespace(a=1).a", "raise_exception('boom')", "strftime_now('')",
    "undefined_fn()", "s()", "dict(_a=1)",
]


def add_expr_cases():
    for i, e in enumerate(EXPRS):
        add(f"expr_{i:03d}", "{{ " + e + " }}", CTX)


STATEMENTS = [
    ("if_basic", "{% if t %}yes{% endif %}|{% if fa %}no{% endif %}"),
    ("if_elif_else", "{% for v in [0, 1, 2, 3] %}{% if v == 0 %}zero{% elif v == 1 %}one{% elif v == 2 %}two{% else %}many{% endif %},{% endfor %}"),
    ("if_undefined", "{% if undefined_x %}a{% else %}b{% endif %}"),
    ("if_generator_true", "{% if l|select('gt', 100) %}gen-true{% endif %}"),
    ("for_list", "{% for x in l %}{{ x }},{% endfor %}"),
    ("for_dict", "{% for k in d %}{{ k }};{% endfor %}"),
    ("for_items", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}"),
    ("for_items_filter", "{% for k, v in d|dictsort %}{{ k }}={{ v }};{% endfor %}"),
    ("for_tuple_parens", "{% for (a, b) in [(1, 2), (3, 4)] %}{{ a + b }};{% endfor %}"),
    ("for_string", "{% for c in u %}[{{ c }}]{% endfor %}"),
    ("for_else", "{% for x in [] %}x{% else %}empty{% endfor %}"),
    ("for_else_undefined", "{% for x in undefined_x %}x{% else %}empty{% endfor %}"),
    ("for_none", "{% for x in nn %}x{% endfor %}"),
    ("for_int", "{% for x in n %}x{% endfor %}"),
    ("for_if", "{% for x in range(10) if x is odd %}{{ x }}/{{ loop.index }}/{{ loop.length }};{% endfor %}"),
    ("for_loop_vars", "{% for x in ls %}{{ loop.index }} {{ loop.index0 }} {{ loop.revindex }} {{ loop.revindex0 }} {{ loop.first }} {{ loop.last }} {{ loop.length }}|{% endfor %}"),
    ("for_prev_next", "{% for x in l %}{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }}{% if loop.previtem is defined %}!{% endif %};{% endfor %}"),
    ("for_nested_loop", "{% for a in [1, 2] %}{% for b in [3, 4] %}{{ loop.index }}{{ a }}{{ b }} {% endfor %}{{ loop.index }}|{% endfor %}"),
    ("for_break", "{% for x in range(10) %}{% if x == 3 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
    ("for_continue", "{% for x in range(6) %}{% if x is even %}{% continue %}{% endif %}{{ x }}{% endfor %}"),
    ("for_reversed_slice", "{% for m in msgs[::-1] %}{{ m.role }} {% endfor %}"),
    ("for_scope", "{% set y = 0 %}{% for i in [1, 2, 3] %}[{{ y }}]{% set y = i %}{% endfor %}{{ y }}"),
    ("for_scope2", "{% for i in [1, 2, 3] %}{% if i == 1 %}{% set y = 5 %}{% endif %}[{{ y }}]{% endfor %}"),
    ("for_target_shadow", "{% set x = 'out' %}{% for x in [1] %}{{ x }}{% endfor %}{{ x }}"),
    ("for_unpack_error", "{% for a, b in [1, 2] %}{{ a }}{% endfor %}"),
    ("for_unpack_count_error", "{% for a, b in [(1, 2, 3)] %}{{ a }}{% endfor %}"),
    ("for_loop_outside", "{{ loop }}"),
    ("for_selectattr", "{% for m in msgs|selectattr('role', 'eq', 'user') %}{{ m.content }};{% endfor %}"),
    ("set_basic", "{% set a = 1 %}{% set b, c = 2, 3 %}{{ a }}{{ b }}{{ c }}"),
    ("set_tuple", "{% set a = 1, 2 %}{{ a }}"),
    ("set_block", "{% set blk %}inner {{ n }}{% endset %}[{{ blk }}]"),
    ("set_block_filter", "{% set blk | upper | trim %}  inner {{ s }} {% endset %}[{{ blk }}]"),
    ("set_in_if", "{% if t %}{% set a = 'in-if' %}{% endif %}{{ a }}"),
    ("set_override_ctx", "{{ n }}{% set n = 8 %}{{ n }}"),
    ("set_messages_slice", "{% set messages = msgs[1:] %}{{ messages|length }}{{ messages[0].role }}"),
    ("namespace_basic", "{% set ns = namespace(a=1, b='x') %}{% set ns.a = ns.a + 1 %}{{ ns.a }}{{ ns.b }}{{ ns.c }}"),
    ("namespace_loop", "{% set ns = namespace(found=false, idx=-1) %}{% for m in msgs %}{% if m.role == 'tool' %}{% set ns.found = true %}{% set ns.idx = loop.index0 %}{% endif %}{% endfor %}{{ ns.found }} {{ ns.idx }}"),
    ("namespace_dict", "{% set ns = namespace({'a': 1}) %}{{ ns.a }}{{ ns['a'] }}"),
    ("namespace_print", "{% set ns = namespace(a=1) %}{{ ns }}"),
    ("namespace_set_nonns", "{% set d2 = {} %}{% set d2.x = 1 %}"),
    ("namespace_underscore", "{% set ns = namespace() %}{% set ns._x = 1 %}"),
    ("namespace_empty", "{% set ns = namespace() %}{% set ns.k = 'v' %}{{ ns.k }}"),
    ("macro_basic", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Bo') }} {{ greet('Al', '?') }} {{ greet(name='Cy', punct='.') }}"),
    ("macro_missing_arg", "{% macro m(a, b) %}[{{ a }}|{{ b }}]{% endmacro %}{{ m(1) }}"),
    ("macro_varargs", "{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, k=4) }}"),
    ("macro_recursive", "{% macro fact(k) %}{% if k <= 1 %}1{% else %}{{ k * fact(k - 1)|int }}{% endif %}{% endmacro %}{{ fact(5) }}"),
    ("macro_infinite", "{% macro r(k) %}{{ r(k + 1) }}{% endmacro %}{{ r(0) }}"),
    ("macro_sees_globals", "{% set g = 'G' %}{% macro m() %}{{ g }}{{ n }}{% endmacro %}{{ m() }}"),
    ("macro_json_schema", "{% macro render(p, indent=0) %}{% for k, v in p.items() %}{{ ' ' * indent }}{{ k }}: {% if v is mapping %}\n{{ render(v, indent + 2) }}{% else %}{{ v }}\n{% endif %}{% endfor %}{% endmacro %}{{ render(d) }}"),
    ("macro_caller", "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}inside {{ n }}{% endcall %}"),
    ("macro_caller_args", "{% macro each(xs) %}{% for x in xs %}{{ caller(x) }}{% endfor %}{% endmacro %}{% call(item) each(l) %}<{{ item }}>{% endcall %}"),
    ("macro_callable", "{% macro m() %}x{% endmacro %}{{ m is callable }}"),
    ("filter_block", "{% filter upper %}hello {{ s }}{% endfilter %}"),
    ("with_block", "{% with a = 1, b = n %}{{ a + b }}{% endwith %}{{ a }}"),
    ("raw_block", "{% raw %}{{ not evaluated }} {% if %}{% endraw %}after"),
    ("raw_block_ws", "x  \n  {%- raw -%}  {{ raw }}  {%- endraw -%}  \n y"),
    ("generation_block", "{% for m in msgs %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}<gen>{% endgeneration %}{% endif %}{% endfor %}"),
    ("comment", "a{# comment {{ x }} #}b{#- trimmed -#}  c"),
    ("comment_lines", "a\n  {# c #}\nb\n{#- x #}\n  c"),
    ("print_tuple", "{{ 1, 2 }}"),
    ("print_string_with_tags", "{{ '{{ not }}' }}{{ \"%}\" }}"),
    ("dict_literal_braces", "{{ {'a': {'b': 1}} }}"),
    ("concat_undefined", "{{ 'a' ~ undefined_x ~ 'b' }}"),
    ("tojson_tools", "{% for t in tools %}{{ t|tojson }}\n{% endfor %}"),
    ("unicode_text", "é{{ u }}ü\n{% if t %}東京{% endif %}"),
    ("crlf_text", "a\r\nb\r\n{% if t %}\r\nc{% endif %}\r\n"),
    ("cr_text", "a\rb{% if t %}\rc{% endif %}\r"),
    ("trailing_newline", "text\n"),
    ("trailing_newlines", "text\n\n"),
    ("raise_in_if", "{% if n > 5 %}{{ raise_exception('n too big: ' ~ n) }}{% endif %}"),
    ("strftime", "{{ strftime_now('%Y')|length }}"),
    ("dict_global", "{% set x = dict(role='user') %}{{ x.role }}{{ x|tojson }}"),
    ("messages_qwen_like", "{%- for message in msgs %}{%- if message.role == 'assistant' and message.tool_calls %}{%- for tc in message.tool_calls %}{%- if tc.function %}{%- set tc = tc.function %}{%- endif %}<{{ tc.name }}:{{ tc.arguments|tojson }}>{%- endfor %}{%- endif %}{%- endfor %}"),
    ("loop_cycle", "{% for x in l %}{{ loop.cycle('odd', 'even') }} {% endfor %}{% for x in l %}{{ loop }}{% endfor %}"),
    ("is_string_if", "{{ 'a' if s is string else 'b' }}"),
    ("nested_ternary_filters", "{{ (msgs|length - 1) if msgs else 0 }}"),
    ("filter_precedence", "{{ -3|abs }} {{ 10 - 3|abs }} {{ 'ab'|upper ~ 'c' }} {{ not t|string }}"),
    ("test_precedence", "{{ 1 + 1 is even }} {{ not 2 is odd }} {{ nn is none and t }}"),
    ("in_chains", "{{ 1 in l in [l] }} {{ 'a' not in 'xyz' }}"),
]

ERRORS = [
    ("err_unclosed_if", "{% if t %}abc"),
    ("err_unclosed_for", "{% for x in l %}abc"),
    ("err_unclosed_var", "{{ n "),
    ("err_unclosed_block", "{% if t "),
    ("err_unclosed_comment", "{# abc"),
    ("err_unknown_tag", "{% frobnicate %}"),
    ("err_endif_alone", "{% endif %}"),
    ("err_else_alone", "{% else %}"),
    ("err_bad_expr", "{{ 1 + }}"),
    ("err_bad_expr2", "{{ (1 }}"),
    ("err_bad_expr3", "{{ [1, 2 }}"),
    ("err_unknown_filter", "{{ n|nosuchfilter }}"),
    ("err_unknown_test", "{{ n is nosuchtest }}"),
    ("err_empty_print", "{{ }}"),
    ("err_unterminated_string", "{{ 'abc }}"),
    ("err_mismatched_bracket", "{{ (1] }}"),
    ("err_chained_is", "{{ n is odd is even }}"),
    ("err_extends", "{% extends 'base.html' %}"),
    ("err_include", "{% include 'x.html' %}"),
    ("err_set_no_value", "{% set %}"),
    ("err_for_no_in", "{% for x l %}{% endfor %}"),
    ("err_bad_char", "{{ n $ 1 }}"),
    ("err_assign_const", "{% set true = 1 %}"),
]

WS_BODIES = [
    "A  \n  {%{s} if t {e}%}  \n  B  \n  {%{s} endif {e}%}  \n  C",
    "A\n{%{s} for x in l {e}%}\n  {{{s} x {e}}}\n{%{s} endfor {e}%}\nC",
    "  {%{s} if t {e}%}X{%{s} endif {e}%}  ",
    "A {#{s} c {e}#} \n B",
    "A\n  {#{s} c {e}#}\n  B",
    "line\n\t {%{s} set v = 1 {e}%}\n\tafter",
    "{{{s} 'x' {e}}}\n  {{{s} 'y' {e}}}  \n",
    "a\n\n  {%{s} if fa {e}%}\n no \n  {%{s} else {e}%}\n yes \n  {%{s} endif {e}%}\n\nz",
    "x{%{s} if t {e}%}\n\ny{%{s} endif {e}%}\n\n",
    "  \u00a0{%{s} if t {e}%}nbsp{%{s} endif {e}%}\u3000\n",
    "{%{s} macro m() {e}%}\n  body\n{%{s} endmacro {e}%}\n[{{ m() }}]",
    "{%{s} raw {e}%}\n  {{ x }}\n{%{s} endraw {e}%}\n",
]


def add_statement_cases():
    ctx = dict(CTX)
    ctx["tools"] = [{"type": "function", "function": {"name": "f", "parameters": {"x": 1.5, "é": "ü"}}}]
    for name, tpl in STATEMENTS:
        add("stmt_" + name, tpl, ctx)
    for name, tpl in ERRORS:
        add(name, tpl, CTX, expect_error=True)
    for bi, body in enumerate(WS_BODIES):
        for s, e in itertools.product(["", "-", "+"], repeat=2):
            if "{#" in body and s == "+":
                continue
            if "{{{" in body and e == "+":
                continue
            tpl = body.replace("{s}", s).replace("{e}", e)
            add(f"ws_{bi:02d}_{'n' if not s else 'm' if s == '-' else 'p'}{'n' if not e else 'm' if e == '-' else 'p'}", tpl, CTX)


# ---------------------------------------------------------------- real chat templates on tau2-like conversations

TOOLS = [
    {"type": "function", "function": {
        "name": "get_reservation_details",
        "description": "Get the details of a reservation — including flights, passengers and payments (café, naïve, 東京).",
        "parameters": {"type": "object", "properties": {
            "reservation_id": {"type": "string", "description": "The reservation ID, such as '8JX2WO'."}},
            "required": ["reservation_id"]}}},
    {"type": "function", "function": {
        "name": "book_reservation",
        "description": "Book a reservation.",
        "parameters": {"type": "object", "properties": {
            "user_id": {"type": "string", "description": "The ID of the user, such as 'sara_doe_496'."},
            "passengers": {"type": "array", "items": {"type": "object", "properties": {
                "first_name": {"type": "string"}, "last_name": {"type": "string"},
                "dob": {"type": "string", "description": "YYYY-MM-DD"}}, "required": ["first_name", "last_name", "dob"]}},
            "payment_methods": {"type": "array", "items": {"type": "object", "properties": {
                "payment_id": {"type": "string"}, "amount": {"type": "number", "minimum": 0.0, "default": 12.5}}}},
            "total_baggages": {"type": "integer", "minimum": 0, "maximum": 10},
            "insurance": {"type": "string", "enum": ["yes", "no"]}},
            "required": ["user_id", "passengers"]}}},
    {"type": "function", "function": {
        "name": "calculate", "description": "Calculate the result of a mathematical expression like \"2 * (3 + 4)\".",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}}},
    {"type": "function", "function": {
        "name": "transfer_to_human_agents", "description": "Transfer the user to a human agent.\nUse sparingly.",
        "parameters": {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}}},
]

SYSTEM = "# Airline Agent Policy\n\nThe current time is 2024-05-15 15:00:00 EST.\nYou can help users **book**, modify, or cancel reservations. Prices: $1,299.50 — « déjà vu »."

CONV_MULTI = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Hi, I want to check reservation 8JX2WO and my friend's too: ZFA04Y."},
    {"role": "assistant", "content": "Let me look both up.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_reservation_details", "arguments": {"reservation_id": "8JX2WO"}}},
        {"id": "call_2", "type": "function", "function": {"name": "get_reservation_details", "arguments": "{\"reservation_id\": \"ZFA04Y\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "{\"reservation_id\": \"8JX2WO\", \"origin\": \"SFO\", \"price\": 1299.5, \"passengers\": 2}"},
    {"role": "tool", "tool_call_id": "call_2", "content": "Error: reservation not found"},
    {"role": "assistant", "content": "The first one is SFO→JFK. The second was not found."},
    {"role": "user", "content": "Book for Zoë Ünal born 1990-01-02, pay 250.75 with credit_card_1. How much is 2*(3+4)?"},
    {"role": "assistant", "content": "", "reasoning_content": "User wants booking and a calculation.\nDo both.", "tool_calls": [
        {"id": "call_3", "type": "function", "function": {"name": "book_reservation", "arguments": {
            "user_id": "zoe_unal_1", "passengers": [{"first_name": "Zoë", "last_name": "Ünal", "dob": "1990-01-02"}],
            "payment_methods": [{"payment_id": "credit_card_1", "amount": 250.75}], "total_baggages": 1, "insurance": "no",
            "nonfree": None, "flag": True, "ratio": 1.0}}},
        {"id": "call_4", "type": "function", "function": {"name": "calculate", "arguments": {"expression": "2*(3+4)"}}}]},
    {"role": "tool", "tool_call_id": "call_3", "content": "{\"status\": \"booked\"}"},
    {"role": "tool", "tool_call_id": "call_4", "content": "14.0"},
    {"role": "assistant", "content": "<think>\nBooked; result 14.\n</think>\n\nDone! Booking confirmed and 2*(3+4) = 14."},
    {"role": "user", "content": "Thanks!"},
]
CONV_LAST_ASSISTANT = CONV_MULTI[:-1]
CONV_NO_SYSTEM = [{"role": "user", "content": "What's 1+1?"}]
CONV_TOOLRESP_USER = [
    {"role": "user", "content": "start"},
    {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "calculate", "arguments": {"expression": "1"}}}]},
    {"role": "tool", "content": "1"},
    {"role": "user", "content": "<tool_response>\nfake\n</tool_response>"},
    {"role": "assistant", "content": "ok", "reasoning_content": "thinking about it"},
]

CONV_LLAMA = [
    {"role": "system", "content": "  You are a helpful agent.  "},
    {"role": "user", "content": " Look up 8JX2WO please "},
    {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "get_reservation_details", "arguments": {"reservation_id": "8JX2WO"}}}]},
    {"role": "tool", "content": "{\"origin\": \"SFO\", \"price\": 1299.5}"},
    {"role": "assistant", "content": "It departs from SFO."},
    {"role": "user", "content": "Great, thanks"},
]
CONV_LLAMA_MULTI_CALL = CONV_LLAMA[:2] + [CONV_MULTI[2]]

CONV_MISTRAL = [
    {"role": "system", "content": "You are an airline agent."},
    {"role": "user", "content": "Check 8JX2WO"},
    {"role": "assistant", "tool_calls": [{"id": "abcdef123", "type": "function", "function": {"name": "get_reservation_details", "arguments": {"reservation_id": "8JX2WO"}}}]},
    {"role": "tool", "tool_call_id": "abcdef123", "content": "{\"origin\": \"SFO\"}"},
    {"role": "assistant", "content": " It leaves from SFO.  "},
    {"role": "user", "content": "Thanks — merci"},
]


def alias_reasoning(messages):
    if HAVE_TRANSFORMERS:
        return ctu._alias_reasoning_fields(messages)
    out = []
    for m in messages:
        r = next((m[k] for k in ("reasoning_content", "thinking", "reasoning") if m.get(k) is not None), None)
        if r is not None:
            m = {"thinking": r, **m, "reasoning_content": r}
        out.append(m)
    return out


CHECKED_WITH_TRANSFORMERS = 0


def add_chat(name, template, messages, tools=None, add_generation_prompt=False, **kwargs):
    """A case whose context is exactly what render_jinja_template hands the template."""
    global CHECKED_WITH_TRANSFORMERS
    context = {"messages": alias_reasoning(messages), "tools": tools, "documents": None,
               "add_generation_prompt": add_generation_prompt, **kwargs}
    row = add(name, template, context)
    if HAVE_TRANSFORMERS:
        try:
            rendered, _ = ctu.render_jinja_template(conversations=[messages], tools=tools, chat_template=template,
                                                     add_generation_prompt=add_generation_prompt, **kwargs)
            assert "output" in row and rendered[0] == row["output"], name
        except AssertionError:
            raise
        except Exception:
            assert "error" in row, name
        CHECKED_WITH_TRANSFORMERS += 1


def qwen3_instruct_2507(qwen3):
    """The hybrid template without reasoning handling and with a plain generation prompt."""
    start = qwen3.index("        {%- set reasoning_content = '' %}")
    end = qwen3.index("        {%- if message.tool_calls %}")
    t = qwen3[:start] + "        {{- '<|im_start|>' + message.role + '\\n' + content }}\n" + qwen3[end:]
    gen = "    {%- if enable_thinking is defined and enable_thinking is false %}\n        {{- '<think>\\n\\n</think>\\n\\n' }}\n    {%- endif %}\n"
    assert gen in t
    return t.replace(gen, "")


def add_real_cases():
    with open(QWEN3_CONFIG) as f:
        qwen3 = json.load(f)["chat_template"]
    instruct = qwen3_instruct_2507(qwen3)
    with open(os.path.join(OUT_DIR, "qwen3_instruct_2507.jinja"), "w") as f:
        f.write(instruct)
    convs = {"multi": CONV_MULTI, "lastasst": CONV_LAST_ASSISTANT, "nosys": CONV_NO_SYSTEM, "toolresp": CONV_TOOLRESP_USER}
    for tname, tpl in (("qwen3", qwen3), ("qwen3i2507", instruct), ("qwen25", QWEN25)):
        for cname, conv in convs.items():
            for tools in (None, TOOLS):
                for agp in (False, True):
                    if cname != "multi" and tools and not agp:
                        continue
                    thinking = [{}] if tname != "qwen3" else [{}, {"enable_thinking": True}, {"enable_thinking": False}]
                    for kw in thinking:
                        if tname == "qwen3" and kw and (not agp or cname != "multi"):
                            continue
                        label = f"real_{tname}_{cname}_{'tools' if tools else 'notools'}_{'gen' if agp else 'nogen'}"
                        if kw:
                            label += "_think" + ("T" if kw["enable_thinking"] else "F")
                        add_chat(label, tpl, conv, tools=tools, add_generation_prompt=agp, **kw)
    llama_kw = {"bos_token": "<|begin_of_text|>", "date_string": "26 Jul 2024"}
    for tools in (None, TOOLS[:2]):
        for agp in (False, True):
            add_chat(f"real_llama31_{'tools' if tools else 'notools'}_{'gen' if agp else 'nogen'}", LLAMA31, CONV_LLAMA,
                     tools=tools, add_generation_prompt=agp, **llama_kw)
    add_chat("real_llama31_tools_in_system", LLAMA31, CONV_LLAMA, tools=TOOLS[:1], add_generation_prompt=True,
             tools_in_user_message=False, **llama_kw)
    add_chat("real_llama31_multicall_error", LLAMA31, CONV_LLAMA_MULTI_CALL, tools=TOOLS[:1], **llama_kw)
    mistral_kw = {"bos_token": "<s>", "eos_token": "</s>"}
    for tools in (None, TOOLS[:2]):
        add_chat(f"real_mistral_{'tools' if tools else 'notools'}", MISTRAL, CONV_MISTRAL, tools=tools, **mistral_kw)
    add_chat("real_mistral_alternation_error", MISTRAL, [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
             **mistral_kw)
    add_chat("real_mistral_bad_id_error", MISTRAL, CONV_LLAMA[1:4], tools=TOOLS[:1], **mistral_kw)


def share_contexts():
    """Replace repeated contexts by keys into one table, to keep the fixture small."""
    table, keys = {}, {}
    for row in CASES:
        blob = json.dumps(row["context"], sort_keys=True)
        if blob not in keys:
            keys[blob] = f"c{len(keys)}"
            table[keys[blob]] = row["context"]
        row["context"] = keys[blob]
    templates, tkeys = {}, {}
    for row in CASES:
        if len(row["template"]) > 300:
            if row["template"] not in tkeys:
                tkeys[row["template"]] = f"t{len(tkeys)}"
                templates[tkeys[row["template"]]] = row["template"]
            row["template"] = {"ref": tkeys[row["template"]]}
    return table, templates


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    add_expr_cases()
    add_statement_cases()
    add_real_cases()
    path = os.path.join(OUT_DIR, "cases.jsonl")
    table, templates = share_contexts()
    with open(path, "w") as f:
        f.write(json.dumps({"contexts": table, "templates": templates}, ensure_ascii=False) + "\n")
        for row in CASES:
            row = {k: v for k, v in row.items() if k != "python_error"}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    n_err = sum(1 for r in CASES if "error" in r)
    print(f"{path}: {len(CASES)} cases ({n_err} errors), {os.path.getsize(path)} bytes; "
          f"environment: {'transformers' if HAVE_TRANSFORMERS else 'replicated'}; "
          f"{CHECKED_WITH_TRANSFORMERS} checked against render_jinja_template")


if __name__ == "__main__":
    main()
