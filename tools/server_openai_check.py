#!/usr/bin/env python3
"""Drives a running g2w-server with the official `openai` Python package (pip install openai) and
checks what a client sees: models, completions (greedy, repeatable), streaming, logprobs, echo,
errors as the client's exception types, and the chat endpoint's refusal.

Usage: tools/server_openai_check.py [--url http://127.0.0.1:8080/v1] [--api-key KEY]
Prints one line per check and "N passed, N failed"; exit status 1 if any failed.
"""
import argparse, sys

import openai
from openai import OpenAI

p = argparse.ArgumentParser()
p.add_argument("--url", default="http://127.0.0.1:8080/v1")
p.add_argument("--api-key", default="none")
args = p.parse_args()
client = OpenAI(base_url=args.url, api_key=args.api_key, max_retries=0)
passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok    {name}")
    else:
        failed += 1
        print(f"FAIL  {name} {detail}")


models = client.models.list()
model = models.data[0].id
check("models.list", len(models.data) == 1 and models.data[0].object == "model", repr(models))

prompt = "ROMEO:"
c1 = client.completions.create(model=model, prompt=prompt, max_tokens=24, temperature=0)
c2 = client.completions.create(model=model, prompt=prompt, max_tokens=24, temperature=0)
check("completion text", isinstance(c1.choices[0].text, str) and len(c1.choices[0].text) > 0, repr(c1))
check("greedy is repeatable", c1.choices[0].text == c2.choices[0].text)
check("usage", c1.usage.total_tokens == c1.usage.prompt_tokens + c1.usage.completion_tokens and c1.usage.completion_tokens <= 24, repr(c1.usage))
check("finish_reason", c1.choices[0].finish_reason in ("stop", "length"))

seeded = [client.completions.create(model=model, prompt=prompt, max_tokens=16, temperature=1, seed=42).choices[0].text for _ in range(2)]
check("seed makes sampling repeatable", seeded[0] == seeded[1])

stream = client.completions.create(model=model, prompt=prompt, max_tokens=24, temperature=0, stream=True,
                                   stream_options={"include_usage": True})
pieces, finish, usage = [], None, None
for chunk in stream:
    if chunk.usage:
        usage = chunk.usage
    for ch in chunk.choices:
        pieces.append(ch.text)
        finish = ch.finish_reason or finish
check("streaming gives the same text", "".join(pieces) == c1.choices[0].text, repr("".join(pieces)))
check("streaming finish_reason and usage", finish in ("stop", "length") and usage is not None and usage.completion_tokens == c1.usage.completion_tokens)

lp = client.completions.create(model=model, prompt=prompt, max_tokens=8, temperature=0, logprobs=3)
l = lp.choices[0].logprobs
check("logprobs shape", len(l.tokens) == len(l.token_logprobs) == len(l.top_logprobs) == len(l.text_offset) > 0)
check("logprobs: greedy token is the top one", all(abs(t - max(top.values())) < 1e-9 for t, top in zip(l.token_logprobs, l.top_logprobs)))
check("logprobs: text_offset from the prompt's end", l.text_offset[0] == len(prompt))

echo = client.completions.create(model=model, prompt=prompt, max_tokens=0, echo=True, logprobs=1)
check("echo scores the prompt", echo.choices[0].text == prompt and echo.choices[0].logprobs.token_logprobs[0] is None)

n = client.completions.create(model=model, prompt=["ROMEO:", "JULIET:"], n=2, max_tokens=4, temperature=1, seed=1)
check("several prompts and n", [c.index for c in n.choices] == [0, 1, 2, 3])

try:
    client.completions.create(model=model, prompt=prompt, max_tokens=4, temperature=-1)
    check("bad temperature is a 400", False)
except openai.BadRequestError as e:
    check("bad temperature is a 400 naming the field", e.status_code == 400 and "temperature" in str(e), str(e))

try:
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    check("chat is refused", False)
except openai.NotFoundError as e:
    check("chat is refused with OpenAI's 404", "not a chat model" in str(e), str(e))

bad = OpenAI(base_url=args.url, api_key="wrong-key", max_retries=0)
if args.api_key != "none":
    try:
        bad.models.list()
        check("wrong key is a 401", False)
    except openai.AuthenticationError:
        check("wrong key is a 401", True)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
