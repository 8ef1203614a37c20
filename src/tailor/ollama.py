"""An Ollama Modelfile for an exported GGUF: the run's chat template as Ollama's Go template, its stop tokens.

A Jinja chat template cannot be translated in general, but almost every one wraps each message in a
fixed prefix and suffix per role. Those are found by rendering a conversation one message at a time
with marker contents, and `OllamaTemplate.render` shows that they reproduce the Jinja rendering.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MARK = {"system": "TailorSystemText", "user": "TailorUserText", "assistant": "TailorAssistantText"}


class TemplateError(ValueError):
    """The chat template does not wrap messages in a fixed prefix and suffix per role."""


@dataclass
class OllamaTemplate:
    wrap: dict[str, tuple[str, str]]  # role -> (prefix, suffix)
    generation: str  # what starts the assistant's reply
    default_system: str | None = None  # the system message the template adds when there is none
    stops: list[str] = field(default_factory=list)

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """What Ollama will feed the model for `messages` (default system message included)."""
        msgs = list(messages)
        if self.default_system is not None and not any(m["role"] == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": self.default_system})
        text = "".join(self.wrap[m["role"]][0] + m["content"] + self.wrap[m["role"]][1] for m in msgs)
        return text + (self.generation if add_generation_prompt else "")

    def to_go(self) -> str:
        """Ollama's TEMPLATE: the same wrapping over .Messages, then the generation prompt."""
        branches = "".join(
            f'{{{{ {"if" if i == 0 else "else if"} eq .Role "{role}" }}}}{_go(pre)}{{{{ .Content }}}}{_go(suf)}'
            for i, (role, (pre, suf)) in enumerate(self.wrap.items()))
        return f"{{{{ range .Messages }}}}{branches}{{{{ end }}}}{{{{ end }}}}{_go(self.generation)}"


def _go(text: str) -> str:
    """Literal text inside a Go template: only '{{' needs escaping."""
    return text.replace("{{", '{{ "{{" }}')


def derive(render: Any, stops: list[str]) -> OllamaTemplate:
    """Per-role wrappers of a chat template; `render(messages, add_generation_prompt)` renders it (Jinja)."""
    sys_msg = {"role": "system", "content": MARK["system"]}
    user = {"role": "user", "content": MARK["user"]}
    reply = {"role": "assistant", "content": MARK["assistant"]}
    steps = [render([sys_msg], False), render([sys_msg, user], False), render([sys_msg, user, reply], False)]
    pieces = [steps[0], _after(steps[1], steps[0]), _after(steps[2], steps[1])]
    wrap = {}
    for (role, mark), piece in zip(MARK.items(), pieces, strict=True):
        if piece.count(mark) != 1:
            raise TemplateError(f"the {role} message is not written once, as it is, by the template")
        pre, _, suf = piece.partition(mark)
        wrap[role] = (pre, suf)
    generation = _after(render([sys_msg, user], True), steps[1])
    alone = render([user], False)  # without a system message: does the template add one?
    user_piece = pieces[1]
    default = None
    if alone != user_piece:
        head = alone.removesuffix(user_piece)
        pre, suf = wrap["system"]
        if head == alone or not head.startswith(pre) or not head.endswith(suf):
            raise TemplateError("the template changes the first user message when there is no system message")
        default = head[len(pre) : len(head) - len(suf)]
    out = OllamaTemplate(wrap, generation, default, [s for s in stops if s])
    turns = [sys_msg, user, reply, {"role": "user", "content": "TailorSecondQuestion"}]
    if out.render(turns) != render(turns, True):
        raise TemplateError("a later turn is rendered differently from the first")
    return out


def _after(text: str, start: str) -> str:
    if not text.startswith(start):
        raise TemplateError("rendering a longer conversation changes how the earlier messages are written")
    return text[len(start) :]


def modelfile(gguf_name: str, template: OllamaTemplate | None, notes: list[str]) -> str:
    """The Modelfile text: FROM, TEMPLATE, SYSTEM, stop PARAMETERs; greedy-friendly defaults left to Ollama."""
    lines = ["# written by tailor; create the model with: ollama create NAME -f Modelfile", f"FROM ./{gguf_name}"]
    lines += [f"# {n}" for n in notes]
    if template is None:
        lines.append('TEMPLATE """{{ .Prompt }}"""')
        return "\n".join(lines) + "\n"
    lines.append(f'TEMPLATE """{template.to_go()}"""')
    if template.default_system is not None:
        lines.append(f'SYSTEM """{template.default_system}"""')
    lines += [f'PARAMETER stop "{_quoted(s)}"' for s in dict.fromkeys(template.stops)]
    return "\n".join(lines) + "\n"


def _quoted(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
