import { failedPrecondition, invalidArgument, notFound } from '@quanta/service-kit';
import type { ServiceError } from '@quanta/service-kit';

/** The one message for every authentication failure, so no failure mode can be told from another. */
export const INVALID_CIPHERTEXT = 'ciphertext is invalid or was not made with this key';

export const invalidCiphertext = (): ServiceError => invalidArgument(INVALID_CIPHERTEXT);
export const keyNotFound = (name: string): ServiceError => notFound(`key "${name}" not found`);
export const belowMinDecryption = (name: string, version: number, min: number): ServiceError =>
  failedPrecondition(`version ${version} of key "${name}" is below its min_decryption_version ${min}`);
