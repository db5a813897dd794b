import { machineDescription, uptimeLine } from './machine';

/** Collects what a run printed as Markdown, so the run can be pasted into docs/benchmarks.md. */
export class Report {
  private readonly lines: string[] = [];

  header(command: string): void {
    this.lines.push(
      `Run: \`${command}\``,
      `Date: ${new Date().toISOString()}`,
      `Machine: ${machineDescription()}`,
      `Load before: ${uptimeLine()}`,
      '',
    );
  }

  section(title: string): void {
    this.lines.push(`### ${title}`, '');
    process.stderr.write(`\n== ${title} (${uptimeLine()})\n`);
  }

  table(headers: string[], rows: (string | number)[][]): void {
    this.lines.push(`| ${headers.join(' | ')} |`, `| ${headers.map(() => '---').join(' | ')} |`);
    for (const r of rows) this.lines.push(`| ${r.join(' | ')} |`);
    this.lines.push('');
  }

  note(text: string): void {
    this.lines.push(text, '');
  }

  text(): string {
    return this.lines.join('\n');
  }
}
