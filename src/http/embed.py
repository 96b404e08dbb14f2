"""Build step: turn a file into a C string constant (the page served at GET /
and the client library served at GET /ringroom.js). usage: embed.py INPUT OUTPUT SYMBOL"""
import sys

src, out, sym = sys.argv[1], sys.argv[2], sys.argv[3]
data = open(src, "rb").read()
lines = ["/* generated from %s by embed.py: edit that file */" % src.split("/")[-1],
         "const char %s[] =" % sym]
for chunk in data.splitlines(keepends=True) or [b""]:
    esc = "".join("\\%03o" % b if b < 32 or b > 126 or b in (34, 92, 63) else chr(b)
                  for b in chunk)
    lines.append('\t"%s"' % esc)
lines[-1] += ";"
lines.append("const unsigned long %s_len = sizeof(%s) - 1;" % (sym, sym))
open(out, "w").write("\n".join(lines) + "\n")
