import { failedPrecondition, invalidArgument, notFound } from '@quanta/service-kit';
import type { DomainError } from '@quanta/service-kit';

/** The one message for every authentication failure, so no failure mode can be told from another. */
export const INVALID_CIPHERTEXT = 'ciphertext is invalid or was not made with this key';

export const invalidCiphertext = (): DomainError => invalidArgument(INVALID_CIPHERTEXT);
export const keyNotFound = (name: string): DomainError => notFound(`key "${name}" not found`);
export const belowMinDecryption = (name: string, version: number, min: number): DomainError =>
  failedPrecondition(`version ${version} of key "${name}" is below its min_decryption_version ${min}`);
