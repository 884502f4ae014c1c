// The API over fetch: bearer token, problem+json errors with what the console does about them.
import { apiUrl } from "./config";

export interface Problem {
  type?: string;
  title?: string;
  status: number;
  detail?: string;
  current_status?: string;
}

export class ApiError extends Error {
  readonly status: number;
  readonly problem: Problem;
  constructor(problem: Problem) {
    super(problem.detail ?? problem.title ?? `HTTP ${problem.status}`);
    this.status = problem.status;
    this.problem = problem;
  }
}

/** What the console tells the user about a failed call. */
export function explain(error: unknown, needed = "reviews:write"): string {
  if (!(error instanceof ApiError)) return "The API could not be reached.";
  switch (error.status) {
    case 401:
      return "Your session has ended: sign in again.";
    case 403:
      return error.problem.type?.endsWith("separation-of-duties")
        ? "You submitted this ticket's task, so someone else must review it."
        : `Your roles do not allow this (it needs ${needed}).`;
    case 409:
      return error.problem.current_status
        ? `Someone else acted first: the ticket is now ${error.problem.current_status.replace("_", " ")}. The page has been refreshed.`
        : `${error.message} The page has been refreshed.`;
    case 429:
      return "Too many requests: wait a moment and try again.";
    default:
      return error.message;
  }
}

export interface Page<T> {
  items: T[];
  next: string | null;
}

export class Api {
  constructor(
    private readonly token: () => string | null,
    private readonly onUnauthorized: () => void,
  ) {}

  headers(): Record<string, string> {
    const token = this.token();
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  private async call(method: string, path: string, body?: unknown): Promise<Response> {
    const init: RequestInit = { method, headers: { ...this.headers() } };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { ...this.headers(), "Content-Type": "application/json" };
    }
    const response = await fetch(apiUrl(path), init);
    if (!response.ok) {
      let problem: Problem = { status: response.status };
      try {
        problem = { ...((await response.json()) as Problem), status: response.status };
      } catch {
        // Not problem+json (a proxy's page): the status says enough.
      }
      if (response.status === 401) this.onUnauthorized();
      throw new ApiError(problem);
    }
    return response;
  }

  async get<T>(path: string): Promise<T> {
    return (await (await this.call("GET", path)).json()) as T;
  }

  /** A page of a list route: its items and the cursor of the next page (`X-Next-Cursor`). */
  async page<T>(path: string): Promise<Page<T>> {
    const response = await this.call("GET", path);
    return { items: (await response.json()) as T[], next: response.headers.get("X-Next-Cursor") };
  }

  async send<T>(method: "POST" | "PATCH", path: string, body: unknown = {}): Promise<T> {
    return (await (await this.call(method, path, body)).json()) as T;
  }
}
