import { describe, expect, it } from 'vitest';
import { DomainError } from '@quanta/service-kit';
import { checkName, checkSha256, formatRef, parseRef } from './names.js';

describe('names and references', () => {
  it('parses the three reference forms and prints them back', () => {
    expect(parseRef('cifar')).toEqual({ model: 'cifar', kind: 'latest' });
    expect(parseRef('cifar:3')).toEqual({ model: 'cifar', kind: 'version', version: 3 });
    expect(parseRef('cifar@production')).toEqual({ model: 'cifar', kind: 'alias', alias: 'production' });
    for (const ref of ['cifar', 'cifar:3', 'cifar@production', 'a.b_c-d:12'])
      expect(formatRef(parseRef(ref))).toBe(ref);
  });

  it('rejects malformed references with INVALID_ARGUMENT naming what is wrong', () => {
    const cases: [string, RegExp][] = [
      ['', /required/],
      ['cifar:0', /must be a number from 1/],
      ['cifar:x', /must be a number from 1/],
      ['cifar:3@prod', /both ":" and "@"/],
      ['cifar@42', /all digits/],
      ['Cifar', /not a valid model name/],
      ['cifar@', /required|not a valid/],
    ];
    for (const [ref, message] of cases) {
      let caught: unknown;
      try {
        parseRef(ref);
      } catch (error: unknown) {
        caught = error;
      }
      expect(caught, ref).toBeInstanceOf(DomainError);
      expect((caught as DomainError).code).toBe('INVALID_ARGUMENT');
      expect((caught as Error).message, ref).toMatch(message);
    }
  });

  it('checks names and digests', () => {
    expect(checkName('model', 'a'.repeat(63))).toBe('a'.repeat(63));
    expect(() => checkName('model', 'a'.repeat(64))).toThrow(/1 to 63 characters/);
    expect(() => checkName('deployment', '.hidden')).toThrow(/starting with a letter or digit/);
    expect(checkSha256('AB'.repeat(32), 'x')).toBe('ab'.repeat(32));
    expect(() => checkSha256('abc', 'header.expected_sha256')).toThrow(/header.expected_sha256 "abc" is not a sha256/);
  });
});
