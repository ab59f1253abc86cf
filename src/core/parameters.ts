/**
 * Request, response and tensor parameters of the v2 protocol. A value is a
 * string, a number (int64 parameters beyond 2^53 arrive as bigint from gRPC),
 * or a boolean.
 */
export type ParameterValue = string | number | bigint | boolean;
export type Parameters = Readonly<Record<string, ParameterValue>>;
