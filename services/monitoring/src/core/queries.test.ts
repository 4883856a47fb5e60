import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { statusName } from './queries.js';

describe('statusName', () => {
  it('names every gRPC status code as grpc-js does', () => {
    for (let code = 0; code <= 16; code++) expect(statusName(code)).toBe(status[code]);
  });

  it('names a code outside the table by its number', () => {
    expect(statusName(17)).toBe('CODE_17');
    expect(statusName(-1)).toBe('CODE_-1');
    expect(statusName(1.5)).toBe('CODE_1.5');
  });
});
