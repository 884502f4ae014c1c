/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** The API's origin when the console is served from elsewhere (deployed); empty locally. */
  readonly VITE_API_BASE?: string;
}
