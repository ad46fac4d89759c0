#!/usr/bin/env python3
"""Helpers of scripts/check-audit-page.sh, standard library only.

  image DIR            write a small random OCI image layout to DIR (ref name "image")
                       and print its manifest digest
  browse ARGS          drive headless Chromium over the DevTools protocol: set the
                       session cookie, open the page, check its text, take a screenshot
  png FILE W H         check that FILE is a PNG of W x H pixels that is not blank

`browse` talks to Chromium through --remote-debugging-pipe (the DevTools protocol as
NUL-separated JSON on file descriptors 3 and 4), so it needs neither a debugging port
nor a websocket library.
"""

import argparse
import base64
import fcntl
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib


def die(msg):
    print(f"check-audit-page: ERROR: {msg}", file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------- image


def write_blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return "sha256:" + digest


def cmd_image(args):
    layout = args.dir
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    layer = os.urandom(512)
    layer_digest = write_blob(layout, layer)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        },
        separators=(",", ":"),
    ).encode()
    config_digest = write_blob(layout, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest,
                    "size": len(layer),
                }
            ],
        },
        separators=(",", ":"),
    ).encode()
    manifest_digest = write_blob(layout, manifest)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": manifest_digest,
                        "size": len(manifest),
                        "annotations": {"org.opencontainers.image.ref.name": "image"},
                    }
                ],
            },
            f,
        )
    print(manifest_digest)


# ---------------------------------------------------------------- browse


class Chromium:
    """One headless Chromium, driven over --remote-debugging-pipe."""

    def __init__(self, binary, width, height, timeout):
        self.timeout = timeout
        self.next_id = 0
        self.events = []
        self.buffer = b""
        self.profile = tempfile.TemporaryDirectory(prefix="tw-chromium-")
        # Chromium reads commands from fd 3 and writes answers and events to fd 4. The
        # child's ends are moved above 10 first, so that dup2 onto 3 and 4 always makes
        # a copy, which exec keeps; every other descriptor here is close-on-exec.
        def high(fd):
            moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
            os.close(fd)
            return moved

        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()
        to_chrome_r, from_chrome_w = high(to_chrome_r), high(from_chrome_w)

        def child_fds():
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        argv = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            f"--user-data-dir={self.profile.name}",
            f"--window-size={width},{height}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            argv,
            preexec_fn=child_fds,
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.profile.name, "chromium.log"), "wb"),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)

    def send(self, method, params=None, session=None, wait=True):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        if not wait:
            return None
        reply = self.read_until(lambda m: m.get("id") == self.next_id)
        if "error" in reply:
            die(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def read_until(self, done):
        deadline = time.monotonic() + self.timeout
        for i, event in enumerate(self.events):
            if done(event):
                return self.events.pop(i)
        while True:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                msg = json.loads(raw)
                if done(msg):
                    return msg
                if "method" in msg:
                    self.events.append(msg)
            if time.monotonic() > deadline:
                die("Chromium did not answer in time")
            chunk = os.read(self.from_chrome, 1 << 20)
            if not chunk:
                die(f"Chromium exited (see {self.profile.name}/chromium.log)")
            self.buffer += chunk

    def close(self):
        try:
            self.send("Browser.close", wait=False)
            self.proc.wait(timeout=10)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        self.profile.cleanup()


def cmd_browse(args):
    chrome = Chromium(args.chromium, args.width, args.height, timeout=60)
    try:
        target = chrome.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = chrome.send(
            "Target.attachToTarget", {"targetId": target, "flatten": True}
        )["sessionId"]
        for domain in ("Page", "Network", "Runtime"):
            chrome.send(f"{domain}.enable", session=session)
        chrome.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": args.width, "height": args.height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        if args.cookie:
            name, _, value = args.cookie.partition("=")
            ok = chrome.send(
                "Network.setCookie",
                {
                    "name": name,
                    "value": value,
                    "url": args.url,
                    "path": "/ui",
                    "httpOnly": True,
                    "sameSite": "Strict",
                },
                session=session,
            )
            if not ok.get("success", True):
                die("Chromium refused the session cookie")
        chrome.send("Page.navigate", {"url": args.url}, session=session)
        chrome.read_until(
            lambda m: m.get("method") == "Page.loadEventFired" and m.get("sessionId") == session
        )
        text = chrome.send(
            "Runtime.evaluate",
            {"expression": "document.body.innerText", "returnByValue": True},
            session=session,
        )["result"].get("value", "")
        missing = [want for want in args.expect if want not in text]
        present = [bad for bad in args.absent if bad in text]
        shot = chrome.send("Page.captureScreenshot", {"format": "png"}, session=session)
        with open(args.out, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
    finally:
        chrome.close()
    if missing or present:
        print(text, file=sys.stderr)
        die(f"{args.url}: page text lacks {missing} or shows {present}")
    print(f"check-audit-page: {args.url}: the page shows {', '.join(args.expect)}")


# ---------------------------------------------------------------- png


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def png_pixels(data):
    """Width, height and the rows of an 8-bit RGB or RGBA PNG, unfiltered."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        die("not a PNG")
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    if header is None:
        die("PNG without IHDR")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace:
        die(f"unexpected PNG format: depth {depth}, colour type {colour}, interlace {interlace}")
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 0xFF
            elif f == 2:
                line[x] = (line[x] + b) & 0xFF
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif f == 4:
                line[x] = (line[x] + paeth(a, b, c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def cmd_png(args):
    with open(args.file, "rb") as f:
        data = f.read()
    width, height, bpp, rows = png_pixels(data)
    if (width, height) != (args.width, args.height):
        die(f"{args.file}: {width}x{height}, expected {args.width}x{args.height}")
    colours = {}
    for row in rows[::3]:
        for x in range(0, len(row), bpp * 3):
            px = row[x : x + 3]
            colours[px] = colours.get(px, 0) + 1
    total = sum(colours.values())
    background = max(colours.values())
    if len(colours) < 8 or background > 0.995 * total:
        die(f"{args.file} looks blank: {len(colours)} colours, {background / total:.1%} background")
    print(
        f"check-audit-page: {args.file}: PNG {width}x{height}, {len(colours)} colours, "
        f"{1 - background / total:.1%} of it not background"
    )


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("image")
    i.add_argument("dir")
    b = sub.add_parser("browse")
    b.add_argument("--chromium", default="chromium")
    b.add_argument("--url", required=True)
    b.add_argument("--cookie", help="NAME=VALUE of the session cookie")
    b.add_argument("--out", required=True)
    b.add_argument("--width", type=int, default=1200)
    b.add_argument("--height", type=int, default=900)
    b.add_argument("--expect", action="append", default=[], help="text the page must show")
    b.add_argument("--absent", action="append", default=[], help="text the page must not show")
    g = sub.add_parser("png")
    g.add_argument("file")
    g.add_argument("width", type=int)
    g.add_argument("height", type=int)
    args = p.parse_args()
    {"image": cmd_image, "browse": cmd_browse, "png": cmd_png}[args.cmd](args)


if __name__ == "__main__":
    main()
