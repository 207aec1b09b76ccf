import * as Option from "./Option.js"
import { dual, type LazyArg } from "./Function.js"

/** Doc. */
export interface Shape {
  readonly kind: string
  area(scale: number): number
}

export class Circle implements Shape {
  readonly kind = "circle"
  #radius: number
  constructor(radius: number) {
    this.#radius = radius
  }
  area(scale: number): number {
    const factor = Math.PI * scale
    return factor * this.#radius ** 2
  }
}

enum Mode { Fast, Slow }

export const describe = (shape: Shape, { label, size: n }: Options = {}): string => {
  let text = `${label}: ${shape.kind} ${n}`
  for (const part of [text]) {
    text += part
  }
  const opt: Option.Option<number> = Option.some(n)
  return format(text, Mode.Fast, { text, extra: 1 }, new Circle(2), /ab+c/g, undefined)
}

function format(value: string, ...args: Array<unknown>): string {
  try {
    return value.trim()
  } catch (err) {
    return String(err)
  }
}
