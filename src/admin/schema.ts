/** Small builders for the operations' strict JSON schemas. */

/** An object with exactly these members (`required` among them), nothing else. */
export function object(properties: Record<string, object>, required: string[] = []): object {
  return {
    type: 'object',
    additionalProperties: false,
    properties,
    ...(required.length > 0 ? { required } : {}),
  };
}

export const NO_INPUT = object({});

export const text = (maxLength = 200): object => ({ type: 'string', minLength: 1, maxLength });

export const flag = { type: 'boolean' } as const;

export const integer = (minimum: number, maximum: number): object => ({ type: 'integer', minimum, maximum });

export const list = (items: object, maxItems = 1000): object => ({ type: 'array', items, maxItems });
