import { Readable } from 'node:stream';

import { expect } from 'chai';

import { asUtf8 } from '../../src/imports/parse.js';

/** Passes the chunks, as given, through `asUtf8`: its output, or the message it refused with. */
async function through(chunks: Buffer[], charset?: string): Promise<string> {
  const out: Buffer[] = [];
  try {
    for await (const chunk of Readable.from(chunks).pipe(asUtf8(charset))) out.push(chunk);
  } catch (err) {
    return `refused: ${(err as Error).message}`;
  }
  return Buffer.concat(out).toString('utf8');
}

const bytes = (...parts: Array<string | number[]>) =>
  parts.map((part) => (typeof part === 'string' ? Buffer.from(part, 'latin1') : Buffer.from(part)));

describe('the text of an import file', () => {
  it('passes UTF-8 as it is, characters split across chunks included', async () => {
    const text = 'name\nZoë\nJosé\n';
    const whole = Buffer.from(text);
    // Every place the file can be cut in two.
    for (let cut = 1; cut < whole.length; cut++) {
      const answer = await through([whole.subarray(0, cut), whole.subarray(cut)]);
      expect(answer, `cut at ${cut}`).to.equal(text);
    }
  });

  it('names the line that is not UTF-8, whatever the line ends and the chunks', async () => {
    const cases: Array<[Buffer[], number]> = [
      [bytes('a\n', 'b\n', 'c\xe9\n'), 3],
      // CRLF cut between its CR and its LF is one line end.
      [bytes('a\r', '\nb\r\n', 'c\n', 'd\xe9\n'), 4],
      // CR alone ends a line.
      [bytes('a\rb\rc\xe9\r'), 3],
      // A character begun in one chunk and ended in the next, then a bad byte.
      [[Buffer.from('x'), Buffer.from([0xc3]), Buffer.from([0xa9, 0x0a]), ...bytes('y\xff\n')], 2],
    ];
    for (const [chunks, line] of cases) {
      const answer = await through(chunks);
      expect(answer).to.match(
        new RegExp(`^refused: the file is not UTF-8 text \\(line ${line}\\)`),
      );
    }
  });

  it('refuses a file that ends inside a character', async () => {
    const answer = await through([Buffer.from('ab\nc'), Buffer.from([0xc3])]);

    expect(answer).to.match(/^refused: the file is not UTF-8 text \(line 2\)/);
  });

  it('counts the lines of a long file with CR line ends, holding nothing back', async () => {
    const chunk = Buffer.from('row\r'.repeat(16_384)); // 64 KiB
    const chunks = [...Array.from({ length: 30 }, () => chunk), ...bytes('bad\xe9\r')];

    const answer = await through(chunks);

    expect(answer).to.match(/^refused: the file is not UTF-8 text \(line 491521\)/);
  });

  it('reads the charset named, and a byte order mark before it', async () => {
    expect(await through(bytes('Jos\xe9\n'), 'windows-1252')).to.equal('José\n');
    expect(await through(bytes('Jos\xe9\n'), 'latin1')).to.equal('José\n');
    expect(await through([Buffer.from('\uFEFFZoë\n')], 'windows-1252')).to.equal('\uFEFFZoë\n');
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('Zoë\n', 'utf16le')]);
    expect(await through([utf16], 'windows-1252')).to.equal('Zoë\n');
    expect(await through(bytes('Jos\xe9\n'), 'UTF-8')).to.match(/^refused: .* \(line 1\)/);
  });
});
